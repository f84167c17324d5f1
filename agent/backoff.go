package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrPermanent is matched (errors.Is) by the errors Run returns when
// retrying cannot help: the server refused the node evidence (a spent or
// unknown join token, a banned agent), no evidence is configured, or a
// server that the agent's bundle verifies names another trust domain. The
// error says what to change. A server certificate that does not verify is
// not permanent (it may be an interception): the agent logs it at ERROR,
// as a server_verification_failed security event, and keeps trying.
var ErrPermanent = errors.New("agent: permanent error")

// Reconnect backoff: exponential from backoffMin to backoffMax, with full
// jitter in the upper half of each step.
const (
	backoffMin = time.Second
	backoffMax = 2 * time.Minute
)

// backoff computes the wait before the next connection attempt.
type backoff struct {
	rand io.Reader
	n    int
}

// next returns the wait for the next attempt and advances the step: a
// duration drawn uniformly from [d/2, d) where d doubles from backoffMin
// up to backoffMax.
func (b *backoff) next() time.Duration {
	d := backoffMin
	for i := 0; i < b.n && d < backoffMax; i++ {
		d *= 2
	}
	d = min(d, backoffMax)
	b.n++
	var buf [8]byte
	if _, err := io.ReadFull(b.rand, buf[:]); err != nil {
		return d
	}
	half := d / 2
	return half + time.Duration(binary.BigEndian.Uint64(buf[:])%uint64(half))
}

// reset starts over at backoffMin (after a session that worked).
func (b *backoff) reset() { b.n = 0 }

// refusedEvidence reports whether the server's answer to AttestAgent means
// the same evidence will never be accepted.
func refusedEvidence(err error) bool {
	switch status.Code(errors.Unwrap(err)) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.AlreadyExists:
		return true
	}
	return false
}

// serverRefusedCert reports whether err is the server's TLS alert
// refusing the agent's certificate.
func serverRefusedCert(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "remote error: tls: bad certificate") ||
		strings.Contains(msg, "remote error: tls: unknown certificate authority") ||
		strings.Contains(msg, "remote error: tls: expired certificate")
}

// permanentAttestError wraps an attestation refusal with what to do.
func (a *Agent) permanentAttestError(err error) error {
	hint := "fix the node evidence and restart the agent"
	if a.cfg.NodeEvidence == nil {
		hint = "create a new join token (`signet token generate`) and restart with --join-token; " +
			"a banned agent must first be evicted (`signet agent evict`)"
	}
	return fmt.Errorf("%w: the server refused to attest this agent: %w; %s", ErrPermanent, err, hint)
}

// untrustedServerError says that no certificate on the server address
// verified, and what to check. It is not permanent: someone who can
// intercept the connection must not be able to stop the agent.
func (a *Agent) untrustedServerError(err error) error {
	return fmt.Errorf("agent: no server verifies against the agent's bundle for trust domain %q: %w; "+
		"if the server was reset, stop the agent, remove its data directory %s, "+
		"and start it with the server's new bundle (--trust-bundle) and a new join token; otherwise check --trust-bundle, "+
		"or whether something else answers on the server address",
		a.cfg.TrustDomain.Name(), err, a.cfg.DataDir)
}
