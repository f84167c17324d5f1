package agent_test

import (
	"testing"
	"time"

	"github.com/signet-id/signet/attest/sshpop"
	"github.com/signet-id/signet/attest/sshpop/sshpoptest"
	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc/codes"
)

// sshHost writes a host key and a host certificate signed by ca, valid
// from after to before, and returns the agent half reading them.
func sshHost(t *testing.T, ca ssh.Signer, certType uint32, after, before time.Time) *sshpop.Evidence {
	t.Helper()
	h := sshpoptest.NewHost(t, t.TempDir(), ca, sshpoptest.Cert{CertType: certType, After: after, Before: before})
	e, err := sshpop.NewEvidence(sshpop.AgentConfig{HostKeyPath: h.KeyPath, HostCertPath: h.CertPath})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func sshSigner(t *testing.T) ssh.Signer { return sshpoptest.NewSigner(t) }

// TestAttestAgentSSHPOP runs sshpop attestation through the AttestAgent
// stream: a good host is stored as SPIRE stores it; bad evidence gets its
// precise code and stores nothing.
func TestAttestAgentSSHPOP(t *testing.T) {
	now := time.Now()
	ca := sshSigner(t)
	a, err := sshpop.NewAttestor(sshpop.ServerConfig{TrustDomain: td, CertAuthorities: []string{string(ssh.MarshalAuthorizedKey(ca.PublicKey()))}, Clock: fakeclock.New(now)})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, a)
	ctx := testContext(t)
	hour := time.Hour
	answerAs := func(h *sshpop.Evidence) func([]byte) []byte {
		return func(c []byte) []byte {
			b, err := h.Respond(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	payloadOf := func(h *sshpop.Evidence) []byte {
		p, err := h.Payload(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	good := sshHost(t, ca, ssh.HostCert, now.Add(-hour), now.Add(hour))
	var replay []byte
	res, err := e.attestStream(t, sshpop.Type, payloadOf(good), func(c []byte) []byte { replay = answerAs(good)(c); return replay })
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	if !res.Reattestable {
		t.Error("an sshpop agent is not reattestable")
	}
	agents, _, err := e.store.ListAgents(ctx, store.AgentFilter{}, 0, "")
	if err != nil || len(agents) != 1 {
		t.Fatalf("agents %v, %v", agents, err)
	}
	rec := agents[0]
	id, err := spiffeid.FromSegments(td, "spire", "agent", "sshpop", rec.Id.Path[len("/spire/agent/sshpop/"):])
	if err != nil || rec.AttestationType != "sshpop" || !rec.CanReattest || len(rec.Selectors) != 0 || len(rec.Id.Path) != len("/spire/agent/sshpop/")+43 {
		t.Fatalf("agent record %v (%v)", rec, err)
	}
	if res.Svid.Id.Path != id.Path() {
		t.Fatalf("SVID for %v, record for %v", res.Svid.Id, id)
	}

	other := sshHost(t, ca, ssh.HostCert, now.Add(-hour), now.Add(hour))
	tests := []struct {
		name    string
		payload []byte
		answer  func([]byte) []byte
		code    codes.Code
		msg     string
	}{
		{"expired", payloadOf(sshHost(t, ca, ssh.HostCert, now.Add(-2*hour), now.Add(-hour))), nil, codes.PermissionDenied, "nodeattestor(sshpop): failed to check host key: ssh: cert has expired"},
		{"unknown CA", payloadOf(sshHost(t, sshSigner(t), ssh.HostCert, now.Add(-hour), now.Add(hour))), nil, codes.PermissionDenied, "no authorities for hostname"},
		{"user certificate", payloadOf(sshHost(t, ca, ssh.UserCert, now.Add(-hour), now.Add(hour))), nil, codes.PermissionDenied, "certificate presented as a host key"},
		{"malformed payload", []byte("{"), nil, codes.InvalidArgument, "failed to unmarshal data"},
		{"forged response", payloadOf(other), answerAs(good), codes.PermissionDenied, "failed to verify signature"},
		{"replayed response", payloadOf(good), func([]byte) []byte { return replay }, codes.PermissionDenied, "failed to verify signature"},
		{"malformed response", payloadOf(good), func([]byte) []byte { return []byte("x") }, codes.InvalidArgument, "failed to unmarshal challenge response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer := tt.answer
			if answer == nil {
				answer = func([]byte) []byte { t.Fatal("challenged on bad evidence"); return nil }
			}
			res, err := e.attestStream(t, sshpop.Type, tt.payload, answer)
			if res.GetSvid() != nil {
				t.Fatalf("an SVID was issued (%v)", err)
			}
			wantStatus(t, err, tt.code, tt.msg)
			if n, err := e.store.CountAgents(ctx, store.AgentFilter{}); err != nil || n != 1 {
				t.Fatalf("%d agents stored (%v), want only the good one", n, err)
			}
		})
	}
}
