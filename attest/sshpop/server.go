package sshpop

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/agentpath"
	"github.com/signet-id/signet/clock"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ServerConfig configures the server half. The tagged fields are SPIRE's
// plugin_data for the server sshpop plugin.
type ServerConfig struct {
	// CertAuthorities are host CA public keys in authorized_keys format.
	CertAuthorities []string `hcl:"cert_authorities,optional"`
	// CertAuthoritiesPath is a file of such keys, one a line. At least
	// one CA, from either field, is required.
	CertAuthoritiesPath string `hcl:"cert_authorities_path,optional"`
	// CanonicalDomain, when set, is the domain the certificate's first
	// principal must end in; .Hostname in the template is the principal
	// without it.
	CanonicalDomain string `hcl:"canonical_domain,optional"`
	// AgentPathTemplate is a text/template for the agent path after
	// /spire/agent; default DefaultAgentPathTemplate.
	AgentPathTemplate string `hcl:"agent_path_template,optional"`

	// TrustDomain is the server's trust domain.
	TrustDomain spiffeid.TrustDomain
	// Clock checks certificate validity; default the wall clock.
	Clock clock.Clock
	// Rand makes nonces; default crypto/rand.
	Rand io.Reader
}

// Attestor is the server half. Its errors are gRPC statuses with SPIRE's
// messages; the codes are InvalidArgument for malformed evidence and
// PermissionDenied for an untrusted certificate or a failed proof (SPIRE
// answers Internal for all of these).
type Attestor struct {
	td      spiffeid.TrustDomain
	cas     map[string]bool // by ssh.FingerprintSHA256
	domain  string
	tmpl    *agentpath.Template
	clock   clock.Clock
	rand    io.Reader
	checker ssh.CertChecker
}

// NewAttestor returns the server half.
func NewAttestor(cfg ServerConfig) (*Attestor, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("sshpop: trust domain is required")
	}
	keys := append([]string(nil), cfg.CertAuthorities...)
	if cfg.CertAuthoritiesPath != "" {
		b, err := os.ReadFile(cfg.CertAuthoritiesPath)
		if err != nil {
			return nil, fmt.Errorf("sshpop: cert_authorities_path: %w", err)
		}
		var n int
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.TrimSpace(line) != "" {
				keys = append(keys, line)
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("sshpop: cert_authorities_path: no data found in file %q", cfg.CertAuthoritiesPath)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New(`sshpop: one of "cert_authorities" or "cert_authorities_path" is required`)
	}
	a := &Attestor{
		td:     cfg.TrustDomain,
		cas:    make(map[string]bool, len(keys)),
		domain: cfg.CanonicalDomain,
		clock:  clock.Or(cfg.Clock),
		rand:   cfg.Rand,
	}
	if a.rand == nil {
		a.rand = rand.Reader
	}
	for _, k := range keys {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			return nil, fmt.Errorf("sshpop: cert authority %q: %w", k, err)
		}
		a.cas[ssh.FingerprintSHA256(pub)] = true
	}
	tmpl, err := parseTemplate(cfg.AgentPathTemplate)
	if err != nil {
		return nil, err
	}
	a.tmpl = tmpl
	a.checker = ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, _ string) bool { return a.cas[ssh.FingerprintSHA256(auth)] },
		Clock:           a.clock.Now,
	}
	return a, nil
}

// Type returns "sshpop".
func (a *Attestor) Type() string { return Type }

// CheckPayload bounds the payload before anything else is looked at.
func (a *Attestor) CheckPayload(payload []byte) error {
	if len(payload) > MaxPayload {
		return errorf(codes.InvalidArgument, "payload of %d bytes is over the limit of %d", len(payload), MaxPayload)
	}
	return nil
}

// errorf is a gRPC status with SPIRE's message prefix.
func errorf(code codes.Code, format string, args ...any) error {
	return status.Errorf(code, "nodeattestor(sshpop): "+format, args...)
}

// Attest verifies the host certificate, challenges the agent to sign a
// fresh nonce with the certificate's key, and names the agent. No
// selectors; the agent may reattest (as SPIRE).
func (a *Attestor) Attest(ctx context.Context, req attest.NodeRequest) (attest.NodeResult, error) {
	if err := a.CheckPayload(req.Payload); err != nil {
		return attest.NodeResult{}, err
	}
	cert, hostname, err := a.verifyCertificate(req.Payload)
	if err != nil {
		return attest.NodeResult{}, err
	}
	nonce := make([]byte, NonceSize)
	if _, err := io.ReadFull(a.rand, nonce); err != nil {
		return attest.NodeResult{}, errorf(codes.Internal, "failed to generate nonce: %v", err)
	}
	challenge, err := json.Marshal(challengeRequest{Nonce: nonce})
	if err != nil {
		return attest.NodeResult{}, errorf(codes.Internal, "failed to marshal challenge request: %v", err)
	}
	if req.Challenge == nil {
		return attest.NodeResult{}, errorf(codes.Internal, "no challenge channel to the agent")
	}
	resp, err := req.Challenge(ctx, challenge)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return attest.NodeResult{}, err
		}
		return attest.NodeResult{}, fmt.Errorf("sshpop: challenge: %w", err)
	}
	if err := verifyResponse(cert, nonce, resp); err != nil {
		return attest.NodeResult{}, err
	}
	id, err := agentID(a.td, a.tmpl, cert, hostname)
	if err != nil {
		return attest.NodeResult{}, errorf(codes.Internal, "failed to create AgentID: %v", err)
	}
	return attest.NodeResult{AgentID: id, CanReattest: true}, nil
}

// parseCertificate reads the payload's host certificate.
func parseCertificate(payload []byte) (*ssh.Certificate, error) {
	var data attestationData
	if err := json.Unmarshal(payload, &data); err != nil {
		return nil, errorf(codes.InvalidArgument, "failed to unmarshal data: %v", err)
	}
	if len(data.Certificate) == 0 {
		return nil, errorf(codes.InvalidArgument, "no certificate in response")
	}
	pub, err := ssh.ParsePublicKey(data.Certificate)
	if err != nil {
		return nil, errorf(codes.InvalidArgument, "failed to parse public key: %v", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, errorf(codes.InvalidArgument, "pubkey in response is not a certificate")
	}
	if len(cert.ValidPrincipals) == 0 {
		return nil, errorf(codes.InvalidArgument, "cert has no valid principals")
	}
	return cert, nil
}

// verifyCertificate parses the payload and checks, as SPIRE does, that
// it is a host certificate for its first principal, signed by a
// configured CA and valid now; it returns the certificate and the
// template's hostname.
func (a *Attestor) verifyCertificate(payload []byte) (*ssh.Certificate, string, error) {
	cert, err := parseCertificate(payload)
	if err != nil {
		return nil, "", err
	}
	// SPIRE's address form: an IPv6 principal does not split, and fails.
	addr := cert.ValidPrincipals[0] + ":22"
	if err := a.checker.CheckHostKey(addr, &net.IPAddr{}, cert); err != nil {
		return nil, "", errorf(codes.PermissionDenied, "failed to check host key: %v", err)
	}
	hostname, ok := decanonicalize(cert.ValidPrincipals[0], a.domain)
	if !ok {
		return nil, "", errorf(codes.PermissionDenied, "failed to decanonicalize hostname: cert principal is not in domain %q", "."+a.domain)
	}
	return cert, hostname, nil
}

// verifyResponse checks the agent's signature, with the certificate's
// key, over sha256(nonce || the agent's nonce).
func verifyResponse(cert *ssh.Certificate, nonce, resp []byte) error {
	if len(resp) > MaxPayload {
		return errorf(codes.InvalidArgument, "challenge response of %d bytes is over the limit of %d", len(resp), MaxPayload)
	}
	var r challengeResponse
	if err := json.Unmarshal(resp, &r); err != nil {
		return errorf(codes.InvalidArgument, "failed to unmarshal challenge response: %v", err)
	}
	if r.Signature == nil {
		return errorf(codes.InvalidArgument, "no signature in challenge response")
	}
	if len(r.Nonce) != NonceSize {
		return errorf(codes.InvalidArgument, "failed to combine nonces: invalid response nonce size")
	}
	data, err := signedData(nonce, r.Nonce)
	if err != nil {
		return errorf(codes.Internal, "failed to combine nonces: %v", err)
	}
	if err := cert.Verify(data, r.Signature); err != nil {
		return errorf(codes.PermissionDenied, "failed to verify signature: %v", err)
	}
	return nil
}
