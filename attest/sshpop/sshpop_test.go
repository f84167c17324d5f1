package sshpop

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/clock/fakeclock"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// newHost returns the evidence of a host whose key ca certified with o.
func newHost(t testing.TB, ca ssh.Signer, o certOpts) *Evidence {
	t.Helper()
	key := newSigner(t)
	e, err := newEvidence(newCert(t, ca, key.PublicKey(), o), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// respond answers challenges as the agent half does.
func respond(t *testing.T, e *Evidence) func([]byte) []byte {
	return func(c []byte) []byte {
		b, err := e.Respond(context.Background(), c)
		if err != nil {
			t.Fatalf("Respond: %v", err)
		}
		return b
	}
}

// run attests payload with a, answering its one challenge with answer.
func run(t *testing.T, a *Attestor, payload []byte, answer func([]byte) []byte) (attest.NodeResult, error) {
	t.Helper()
	challenges := 0
	res, err := a.Attest(context.Background(), attest.NodeRequest{Payload: payload, Challenge: func(_ context.Context, c []byte) ([]byte, error) {
		if challenges++; challenges > 1 {
			t.Fatal("a second challenge")
		}
		return answer(c), nil
	}})
	if err == nil && challenges != 1 {
		t.Fatalf("attested after %d challenges", challenges)
	}
	return res, err
}

func payloadOf(t *testing.T, e *Evidence) []byte {
	t.Helper()
	p, err := e.Payload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAttest(t *testing.T) {
	ca, otherCA := newSigner(t), newSigner(t)
	clk := fakeclock.New(t0)
	a, err := NewAttestor(ServerConfig{TrustDomain: td, CertAuthorities: []string{authorizedKey(ca.PublicKey())}, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if a.Type() != "sshpop" {
		t.Fatalf("Type = %q", a.Type())
	}
	good := newHost(t, ca, certOpts{})
	forger := newSigner(t)
	// A response from an earlier attestation of the good host.
	var replay []byte
	if _, err := run(t, a, payloadOf(t, good), func(c []byte) []byte { replay = respond(t, good)(c); return replay }); err != nil {
		t.Fatalf("first attestation: %v", err)
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	plainKey := mustJSON(attestationData{Certificate: newSigner(t).PublicKey().Marshal()})
	noPrincipals := newHost(t, ca, certOpts{principals: []string{}})

	tests := []struct {
		name    string
		payload []byte
		answer  func([]byte) []byte // nil: the host's own
		host    *Evidence
		code    codes.Code
		msg     string
	}{
		{name: "valid", host: good},
		{name: "valid RSA host", host: rsaHost(t, ca)},
		{name: "valid ECDSA host", host: ecdsaHost(t, ca)},
		{name: "expired", host: newHost(t, ca, certOpts{after: t0.Add(-2 * time.Hour), before: t0.Add(-time.Second)}), code: codes.PermissionDenied, msg: "failed to check host key: ssh: cert has expired"},
		{name: "not yet valid", host: newHost(t, ca, certOpts{after: t0.Add(time.Second)}), code: codes.PermissionDenied, msg: "ssh: cert is not yet valid"},
		{name: "unknown CA", host: newHost(t, otherCA, certOpts{}), code: codes.PermissionDenied, msg: "failed to check host key: ssh: no authorities for hostname"},
		{name: "user certificate", host: newHost(t, ca, certOpts{certType: ssh.UserCert}), code: codes.PermissionDenied, msg: "failed to check host key: ssh: certificate presented as a host key has type 1"},
		{name: "forged response", host: good, answer: func(c []byte) []byte {
			var req challengeRequest
			if err := json.Unmarshal(c, &req); err != nil {
				t.Fatal(err)
			}
			nonce := make([]byte, NonceSize)
			data, _ := signedData(req.Nonce, nonce)
			sig, err := forger.Sign(rand.Reader, data)
			if err != nil {
				t.Fatal(err)
			}
			return mustJSON(challengeResponse{Nonce: nonce, Signature: sig})
		}, code: codes.PermissionDenied, msg: "failed to verify signature: ssh: signature did not verify"},
		{name: "replayed response", host: good, answer: func([]byte) []byte { return replay }, code: codes.PermissionDenied, msg: "failed to verify signature"},
		{name: "malformed payload", payload: []byte("{not json"), code: codes.InvalidArgument, msg: "nodeattestor(sshpop): failed to unmarshal data"},
		{name: "empty payload", payload: []byte{}, code: codes.InvalidArgument, msg: "failed to unmarshal data"},
		{name: "no certificate", payload: []byte(`{"Certificate":""}`), code: codes.InvalidArgument, msg: "no certificate in response"},
		{name: "garbage certificate", payload: []byte(`{"Certificate":"AAAA"}`), code: codes.InvalidArgument, msg: "failed to parse public key"},
		{name: "a key, not a certificate", payload: plainKey, code: codes.InvalidArgument, msg: "pubkey in response is not a certificate"},
		{name: "no principals", host: noPrincipals, code: codes.InvalidArgument, msg: "cert has no valid principals"},
		{name: "payload too large", payload: make([]byte, MaxPayload+1), code: codes.InvalidArgument, msg: "over the limit of 65536"},
		{name: "response not JSON", host: good, answer: func([]byte) []byte { return []byte("nope") }, code: codes.InvalidArgument, msg: "failed to unmarshal challenge response"},
		{name: "response without signature", host: good, answer: func([]byte) []byte {
			return []byte(`{"Nonce":"` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `"}`)
		}, code: codes.InvalidArgument, msg: "no signature in challenge response"},
		{name: "short response nonce", host: good, answer: func([]byte) []byte {
			return []byte(`{"Nonce":"AAAA","Signature":{"Format":"ssh-ed25519","Blob":"AAAA"}}`)
		}, code: codes.InvalidArgument, msg: "failed to combine nonces: invalid response nonce size"},
		{name: "response too large", host: good, answer: func([]byte) []byte { return make([]byte, MaxPayload+1) }, code: codes.InvalidArgument, msg: "challenge response of 65537 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload, answer := tt.payload, tt.answer
			if tt.host != nil {
				payload = payloadOf(t, tt.host)
				if answer == nil {
					answer = respond(t, tt.host)
				}
			}
			if answer == nil {
				answer = func([]byte) []byte { t.Fatal("challenged on bad evidence"); return nil }
			}
			res, err := run(t, a, payload, answer)
			if tt.code == codes.OK {
				if err != nil {
					t.Fatalf("Attest: %v", err)
				}
				want := "spiffe://example.org/spire/agent/sshpop/" + Fingerprint(tt.host.cert)
				if res.AgentID.String() != want || !res.CanReattest || len(res.Selectors) != 0 {
					t.Fatalf("Attest = %+v, want %s, reattestable, no selectors", res, want)
				}
				return
			}
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("Attest: %v, want %v saying %q", err, tt.code, tt.msg)
			}
			if !strings.HasPrefix(status.Convert(err).Message(), "nodeattestor(sshpop): ") {
				t.Errorf("message %q lacks SPIRE's prefix", status.Convert(err).Message())
			}
			if !res.AgentID.IsZero() {
				t.Fatalf("a refused attestation returned %s", res.AgentID)
			}
		})
	}

	// The validity window follows the injected clock.
	clk.Advance(2 * time.Hour)
	if _, err := run(t, a, payloadOf(t, good), respond(t, good)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after the certificate's end: %v", err)
	}
}

// TestFingerprint pins the agent ID's last segment: sha256 over the whole
// certificate's wire form, unpadded URL-safe base64 (43 characters).
func TestFingerprint(t *testing.T) {
	e := newHost(t, newSigner(t), certOpts{})
	sum := sha256.Sum256(e.cert.Marshal())
	want := strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString(sum[:])), "=")
	if got := Fingerprint(e.cert); got != want || len(got) != 43 {
		t.Fatalf("Fingerprint = %q, want %q", got, want)
	}
	if Fingerprint(e.cert) == strings.TrimPrefix(ssh.FingerprintSHA256(e.cert.Key), "SHA256:") {
		t.Fatal("the fingerprint is the key's, not the certificate's")
	}
}

func TestAgentPathTemplate(t *testing.T) {
	ca := newSigner(t)
	host := newHost(t, ca, certOpts{principals: []string{"node1.example.com", "node1"}, keyID: "rack-7"})
	tests := []struct {
		name, template, domain string
		want                   string // agent ID path; empty: refused
		code                   codes.Code
		msg                    string
	}{
		{name: "default", want: "/spire/agent/sshpop/" + Fingerprint(host.cert)},
		{name: "hostname", template: "/{{ .PluginName }}/{{ .Hostname }}", want: "/spire/agent/sshpop/node1.example.com"},
		{name: "canonical domain", template: "/sshpop/{{ .Hostname }}", domain: "example.com", want: "/spire/agent/sshpop/node1"},
		{name: "certificate fields", template: "/ssh/{{ .KeyId }}/{{ .Serial }}/{{ index .ValidPrincipals 1 | upper }}", want: "/spire/agent/ssh/rack-7/7/NODE1"},
		{name: "outside the canonical domain", template: "/sshpop/{{ .Hostname }}", domain: "example.net", code: codes.PermissionDenied, msg: `failed to decanonicalize hostname: cert principal is not in domain ".example.net"`},
		{name: "not a path", template: "sshpop/{{ .Hostname }}", code: codes.Internal, msg: "failed to create AgentID"},
		{name: "empty segment", template: "/sshpop//{{ .Hostname }}", code: codes.Internal, msg: "failed to create AgentID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewAttestor(ServerConfig{TrustDomain: td, CertAuthorities: []string{authorizedKey(ca.PublicKey())}, AgentPathTemplate: tt.template, CanonicalDomain: tt.domain, Clock: fakeclock.New(t0)})
			if err != nil {
				t.Fatal(err)
			}
			res, err := run(t, a, payloadOf(t, host), respond(t, host))
			if tt.want != "" {
				if err != nil || res.AgentID.Path() != tt.want {
					t.Fatalf("Attest = %s, %v; want %s", res.AgentID, err, tt.want)
				}
				return
			}
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("Attest: %v, want %v saying %q", err, tt.code, tt.msg)
			}
		})
	}
}

func TestNewAttestor(t *testing.T) {
	ca1, ca2 := newSigner(t), newSigner(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "cas")
	if err := os.WriteFile(file, []byte("\n"+authorizedKey(ca2.PublicKey())+"\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Keys from both fields are trusted.
	a, err := NewAttestor(ServerConfig{TrustDomain: td, CertAuthorities: []string{authorizedKey(ca1.PublicKey())}, CertAuthoritiesPath: file, Clock: fakeclock.New(t0)})
	if err != nil {
		t.Fatal(err)
	}
	for i, ca := range []ssh.Signer{ca1, ca2} {
		h := newHost(t, ca, certOpts{})
		if _, err := run(t, a, payloadOf(t, h), respond(t, h)); err != nil {
			t.Errorf("CA %d: %v", i+1, err)
		}
	}

	good := []string{authorizedKey(ca1.PublicKey())}
	tests := []struct {
		name string
		cfg  ServerConfig
		msg  string
	}{
		{"no trust domain", ServerConfig{CertAuthorities: good}, "trust domain is required"},
		{"no CA", ServerConfig{TrustDomain: td}, `"cert_authorities" or "cert_authorities_path" is required`},
		{"bad CA", ServerConfig{TrustDomain: td, CertAuthorities: []string{"ssh-ed25519 AAAA"}}, "cert authority"},
		{"missing CA file", ServerConfig{TrustDomain: td, CertAuthoritiesPath: filepath.Join(dir, "nope")}, "cert_authorities_path"},
		{"empty CA file", ServerConfig{TrustDomain: td, CertAuthoritiesPath: empty}, "no data found"},
		{"bad template", ServerConfig{TrustDomain: td, CertAuthorities: good, AgentPathTemplate: "/{{ .Hostname"}, "agent_path_template"},
		{"unknown template function", ServerConfig{TrustDomain: td, CertAuthorities: good, AgentPathTemplate: "/{{ uuidv4 }}"}, `function "uuidv4" not defined`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewAttestor(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "sshpop: ") {
				t.Fatalf("NewAttestor: %v, want an error saying %q", err, tt.msg)
			}
		})
	}
}

func TestEvidence(t *testing.T) {
	ca := newSigner(t)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	cert := newCert(t, ca, pub, certOpts{})
	cfg := writeHost(t, priv, cert)
	e, err := NewEvidence(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if e.Type() != Type {
		t.Fatalf("Type = %q", e.Type())
	}
	// The payload is SPIRE's: {"Certificate": base64(wire form)}.
	p := payloadOf(t, e)
	if want := `{"Certificate":"` + base64.StdEncoding.EncodeToString(cert.Marshal()) + `"}`; string(p) != want {
		t.Fatalf("Payload = %s, want %s", p, want)
	}
	a, err := NewAttestor(ServerConfig{TrustDomain: td, CertAuthorities: []string{authorizedKey(ca.PublicKey())}, Clock: fakeclock.New(t0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, a, p, respond(t, e)); err != nil {
		t.Fatalf("Attest with the files' evidence: %v", err)
	}
	// The response's shape is SPIRE's: Nonce and an ssh.Signature.
	resp, err := e.Respond(context.Background(), []byte(`{"Nonce":"`+base64.StdEncoding.EncodeToString(make([]byte, 32))+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var shape map[string]json.RawMessage
	if err := json.Unmarshal(resp, &shape); err != nil || len(shape) != 2 || shape["Nonce"] == nil || !strings.Contains(string(shape["Signature"]), `"Format":"ssh-ed25519","Blob":"`) {
		t.Fatalf("response %s", resp)
	}
	if _, err := e.Respond(context.Background(), []byte(`{"Nonce":"AAAA"}`)); err == nil || !strings.Contains(err.Error(), "invalid challenge nonce size") {
		t.Fatalf("short challenge nonce: %v", err)
	}
	if _, err := e.Respond(context.Background(), []byte(`nope`)); err == nil {
		t.Fatal("a malformed challenge was answered")
	}

	other := writeHost(t, priv, pub) // a public key where the cert should be
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	mismatch := writeHost(t, otherPriv, cert)
	tests := []struct {
		name string
		cfg  AgentConfig
		msg  string
	}{
		{"no key file", AgentConfig{HostKeyPath: filepath.Join(t.TempDir(), "k"), HostCertPath: cfg.HostCertPath}, "read host key"},
		{"no cert file", AgentConfig{HostKeyPath: cfg.HostKeyPath, HostCertPath: filepath.Join(t.TempDir(), "c")}, "read host cert"},
		{"bad key", AgentConfig{HostKeyPath: cfg.HostCertPath, HostCertPath: cfg.HostCertPath}, "host key"},
		{"bad cert", AgentConfig{HostKeyPath: cfg.HostKeyPath, HostCertPath: cfg.HostKeyPath}, "host cert"},
		{"a key, not a cert", AgentConfig{HostKeyPath: cfg.HostKeyPath, HostCertPath: other.HostCertPath}, "is a public key, not a certificate"},
		{"key and cert differ", mismatch, "does not match the host certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewEvidence(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("NewEvidence: %v, want %q", err, tt.msg)
			}
		})
	}
}

// rsaHost is a host with an RSA key, SPIRE's default host key type; the
// agent signs as x/crypto's RSA signer does by default.
func rsaHost(t *testing.T, ca ssh.Signer) *Evidence {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return hostWithKey(t, ca, key)
}

func ecdsaHost(t *testing.T, ca ssh.Signer) *Evidence {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return hostWithKey(t, ca, key)
}

func hostWithKey(t *testing.T, ca ssh.Signer, key any) *Evidence {
	t.Helper()
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	e, err := newEvidence(newCert(t, ca, s.PublicKey(), certOpts{}), s, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestRSASignatureFormats: spire-agent's RSA host key signs with ssh-rsa
// (SHA-1, x/crypto's default for the key type), as this agent half does;
// the server accepts that and the SHA-2 formats.
func TestRSASignatureFormats(t *testing.T) {
	ca := newSigner(t)
	host := rsaHost(t, ca)
	a, err := NewAttestor(ServerConfig{TrustDomain: td, CertAuthorities: []string{authorizedKey(ca.PublicKey())}, Clock: fakeclock.New(t0)})
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{ssh.KeyAlgoRSA, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512} {
		t.Run(format, func(t *testing.T) {
			_, err := run(t, a, payloadOf(t, host), func(c []byte) []byte {
				b := respond(t, host)(c)
				var r challengeResponse
				if err := json.Unmarshal(b, &r); err != nil {
					t.Fatal(err)
				}
				if r.Signature.Format != ssh.KeyAlgoRSA {
					t.Fatalf("the agent half signed with %s", r.Signature.Format)
				}
				var req challengeRequest
				if err := json.Unmarshal(c, &req); err != nil {
					t.Fatal(err)
				}
				data, _ := signedData(req.Nonce, r.Nonce)
				sig, err := host.signer.(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader, data, format)
				if err != nil {
					t.Fatal(err)
				}
				out, _ := json.Marshal(challengeResponse{Nonce: r.Nonce, Signature: sig})
				return out
			})
			if err != nil {
				t.Fatalf("Attest: %v", err)
			}
		})
	}
}
