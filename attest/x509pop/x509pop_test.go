package x509pop_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/x509pop"
	"github.com/signet-id/signet/attest/x509pop/x509poptest"
	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// counter is deterministic randomness: each read fills with the next
// byte value, so every nonce is distinct and predictable.
type counter struct{ n byte }

func (c *counter) Read(p []byte) (int, error) {
	c.n++
	for i := range p {
		p[i] = c.n
	}
	return len(p), nil
}

type fixture struct {
	now          time.Time
	root, inter  *x509poptest.CA
	other        *x509poptest.CA // not trusted
	clk          *fakeclock.Clock
	newAttestor  func(t testing.TB, tmpl string) *x509pop.Attestor
	evidenceFor  func(t testing.TB, l x509poptest.Leaf, ca *x509poptest.CA, withInter bool) (*x509pop.Evidence, *x509.Certificate)
	defaultValid x509poptest.Leaf
}

func newFixture(t testing.TB) *fixture {
	now := time.Unix(1_800_000_000, 0)
	f := &fixture{now: now, clk: fakeclock.New(now)}
	f.root = x509poptest.NewCA(t, "root", nil, now.Add(-time.Hour))
	f.inter = x509poptest.NewCA(t, "intermediate", f.root, now.Add(-time.Hour))
	f.other = x509poptest.NewCA(t, "other", nil, now.Add(-time.Hour))
	f.defaultValid = x509poptest.Leaf{CN: "node1.example.org", NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)}
	f.newAttestor = func(t testing.TB, tmpl string) *x509pop.Attestor {
		a, err := x509pop.NewAttestor(x509pop.Config{TrustDomain: td, Roots: []*x509.Certificate{f.root.Cert}, AgentPathTemplate: tmpl, Clock: f.clk, Rand: &counter{}})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	f.evidenceFor = func(t testing.TB, l x509poptest.Leaf, ca *x509poptest.CA, withInter bool) (*x509pop.Evidence, *x509.Certificate) {
		leaf, key := ca.Issue(t, l)
		var inter []*x509.Certificate
		if withInter {
			inter = append(inter, ca.Cert)
		}
		kp, cp, ip := x509poptest.WriteFiles(t, t.TempDir(), key, leaf, inter...)
		ev, err := x509pop.NewEvidence(x509pop.AgentPluginData{PrivateKeyPath: kp, CertificatePath: cp, IntermediatesPath: ip}, &counter{n: 100})
		if err != nil {
			t.Fatal(err)
		}
		return ev, leaf
	}
	return f
}

// run attests ev with a, the challenge answered by answer (default: ev).
func run(t *testing.T, a *x509pop.Attestor, payload []byte, answer attest.Challenger) (attest.NodeResult, error) {
	t.Helper()
	return a.Attest(context.Background(), attest.NodeRequest{Payload: payload, Challenge: answer})
}

func payloadOf(t *testing.T, ev *x509pop.Evidence) []byte {
	t.Helper()
	p, err := ev.Payload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAttest(t *testing.T) {
	f := newFixture(t)
	a := f.newAttestor(t, "")
	if a.Type() != "x509pop" {
		t.Fatalf("Type = %q", a.Type())
	}
	ev, leaf := f.evidenceFor(t, f.defaultValid, f.inter, true)
	rsaEv, rsaLeaf := f.evidenceFor(t, x509poptest.Leaf{CN: "rsa", RSA: true, NotBefore: f.defaultValid.NotBefore, NotAfter: f.defaultValid.NotAfter}, f.inter, true)
	expired, _ := f.evidenceFor(t, x509poptest.Leaf{CN: "old", NotBefore: f.now.Add(-2 * time.Hour), NotAfter: f.now.Add(-time.Second)}, f.inter, true)
	untrusted, _ := f.evidenceFor(t, f.defaultValid, f.other, false)
	noInter, _ := f.evidenceFor(t, f.defaultValid, f.inter, false)
	noDS, _ := f.evidenceFor(t, x509poptest.Leaf{CN: "x", KeyUsage: x509.KeyUsageKeyEncipherment, NotBefore: f.defaultValid.NotBefore, NotAfter: f.defaultValid.NotAfter}, f.inter, true)
	forger, _ := f.evidenceFor(t, f.defaultValid, f.inter, true) // another key
	payloadOf(t, forger)

	// A response recorded for an earlier challenge.
	var recorded []byte
	if _, err := run(t, a, payloadOf(t, ev), func(ctx context.Context, ch []byte) ([]byte, error) {
		r, err := ev.Respond(ctx, ch)
		recorded = r
		return r, err
	}); err != nil {
		t.Fatalf("recording attestation: %v", err)
	}

	tests := []struct {
		name    string
		payload []byte
		answer  attest.Challenger
		wantID  string
		code    codes.Code
		msg     string
	}{
		{name: "valid ECDSA", payload: payloadOf(t, ev), answer: ev.Respond, wantID: "spiffe://example.org/spire/agent/x509pop/" + x509pop.Fingerprint(leaf)},
		{name: "valid RSA", payload: payloadOf(t, rsaEv), answer: rsaEv.Respond, wantID: "spiffe://example.org/spire/agent/x509pop/" + x509pop.Fingerprint(rsaLeaf)},
		{name: "expired leaf", payload: payloadOf(t, expired), answer: expired.Respond, code: codes.PermissionDenied, msg: "certificate verification failed: x509: certificate has expired"},
		{name: "untrusted CA", payload: payloadOf(t, untrusted), answer: untrusted.Respond, code: codes.PermissionDenied, msg: "certificate verification failed: x509: certificate signed by unknown authority"},
		{name: "intermediate missing", payload: payloadOf(t, noInter), answer: noInter.Respond, code: codes.PermissionDenied, msg: "certificate verification failed"},
		{name: "no digital signature usage", payload: payloadOf(t, noDS), answer: noDS.Respond, code: codes.Internal, msg: "certificate not intended for digital signature use"},
		{name: "forged proof (wrong key)", payload: payloadOf(t, ev), answer: forger.Respond, code: codes.PermissionDenied, msg: "challenge response verification failed: ECDSA signature verify failed"},
		{name: "replayed response", payload: payloadOf(t, ev), answer: func(context.Context, []byte) ([]byte, error) { return recorded, nil }, code: codes.PermissionDenied, msg: "ECDSA signature verify failed"},
		{name: "RSA response to ECDSA", payload: payloadOf(t, ev), answer: func(ctx context.Context, _ []byte) ([]byte, error) {
			return []byte(`{"rsa_signature":{"nonce":"","signature":""}}`), nil
		}, code: codes.PermissionDenied, msg: "expecting ECDSA response"},
		{name: "short nonce", payload: payloadOf(t, ev), answer: func(context.Context, []byte) ([]byte, error) {
			return []byte(`{"ecdsa_signature":{"nonce":"AAAA","r":"AQ==","s":"AQ=="}}`), nil
		}, code: codes.PermissionDenied, msg: "invalid response nonce"},
		{name: "malformed response", payload: payloadOf(t, ev), answer: func(context.Context, []byte) ([]byte, error) { return []byte("{"), nil }, code: codes.InvalidArgument, msg: "unable to unmarshal challenge response"},
		{name: "challenge step fails", payload: payloadOf(t, ev), answer: func(context.Context, []byte) ([]byte, error) {
			return nil, status.Error(codes.Canceled, "gone")
		}, code: codes.Canceled, msg: "gone"},
		{name: "empty payload", payload: nil, code: codes.InvalidArgument, msg: "missing attestation payload"},
		{name: "malformed payload", payload: []byte("not json"), code: codes.InvalidArgument, msg: "failed to unmarshal data"},
		{name: "no certificates", payload: []byte(`{"certificates":[]}`), code: codes.InvalidArgument, msg: "no certificate to attest"},
		{name: "bad leaf DER", payload: []byte(`{"certificates":["AAAA"]}`), code: codes.InvalidArgument, msg: "unable to parse leaf certificate"},
		{name: "too many intermediates", payload: []byte(`{"certificates":["","","","","",""]}`), code: codes.InvalidArgument, msg: "too many intermediate certificates"},
		{name: "payload too large", payload: bytes.Repeat([]byte(" "), x509pop.MaxPayload+1), code: codes.InvalidArgument, msg: "longer than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer := tt.answer
			if answer == nil {
				answer = func(context.Context, []byte) ([]byte, error) { t.Fatal("challenged"); return nil, nil }
			}
			res, err := run(t, a, tt.payload, answer)
			if tt.wantID != "" {
				if err != nil {
					t.Fatalf("Attest: %v", err)
				}
				if res.AgentID.String() != tt.wantID || !res.CanReattest {
					t.Fatalf("Attest = %+v, want %s, reattestable", res, tt.wantID)
				}
				return
			}
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("Attest: %v, want %v saying %q", err, tt.code, tt.msg)
			}
			if !res.AgentID.IsZero() {
				t.Fatalf("refused attestation returned %s", res.AgentID)
			}
		})
	}
}

// TestChallengeIsFresh: every attestation draws a new nonce from the
// injected randomness, in SPIRE's JSON shape for the key type.
func TestChallengeIsFresh(t *testing.T) {
	f := newFixture(t)
	a := f.newAttestor(t, "")
	ev, _ := f.evidenceFor(t, f.defaultValid, f.inter, true)
	var seen [][]byte
	for range 2 {
		if _, err := run(t, a, payloadOf(t, ev), func(ctx context.Context, ch []byte) ([]byte, error) {
			var shape map[string]map[string][]byte
			if err := json.Unmarshal(ch, &shape); err != nil {
				t.Fatalf("challenge %s: %v", ch, err)
			}
			if len(shape) != 2 || shape["rsa_signature"] != nil || len(shape["ecdsa_signature"]["nonce"]) != 32 {
				t.Fatalf("challenge %s, want {ecdsa_signature:{nonce:<32 bytes>}, rsa_signature:null}", ch)
			}
			seen = append(seen, shape["ecdsa_signature"]["nonce"])
			return ev.Respond(ctx, ch)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if bytes.Equal(seen[0], seen[1]) {
		t.Fatal("two attestations got the same nonce")
	}
}

func TestSelectors(t *testing.T) {
	f := newFixture(t)
	a := f.newAttestor(t, "")
	l := f.defaultValid
	l.URIs = []string{"x509pop://example.org/datacenter/us-east-1", "x509pop://example.org/rack/r1/u2", "x509pop://other.org/zone/z", "x509pop://example.org/nokey", "spiffe://example.org/x"}
	ev, leaf := f.evidenceFor(t, l, f.inter, true)
	res, err := run(t, a, payloadOf(t, ev), ev.Respond)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"subject:cn:node1.example.org",
		"ca:fingerprint:" + x509pop.Fingerprint(f.inter.Cert),
		"ca:fingerprint:" + x509pop.Fingerprint(f.root.Cert),
		"serialnumber:" + x509pop.SerialNumberHex(leaf.SerialNumber),
		"san:datacenter:us-east-1",
		"san:rack:r1/u2",
	}
	var got []string
	for _, s := range res.Selectors {
		if s.Type != "x509pop" {
			t.Errorf("selector type %q", s.Type)
		}
		got = append(got, s.Value)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("selectors\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestAgentPathTemplate(t *testing.T) {
	f := newFixture(t)
	l := f.defaultValid
	l.URIs = []string{"x509pop://example.org/datacenter/dc1"}
	ev, leaf := f.evidenceFor(t, l, f.inter, true)
	tests := []struct {
		tmpl, want, err string
	}{
		{tmpl: "", want: "/spire/agent/x509pop/" + x509pop.Fingerprint(leaf)},
		{tmpl: "/cn/{{ .Subject.CommonName }}", want: "/spire/agent/cn/node1.example.org"},
		{tmpl: "/{{ .PluginName }}/{{ .TrustDomain }}/{{ .SerialNumberHex }}", want: "/spire/agent/x509pop/example.org/" + x509pop.SerialNumberHex(leaf.SerialNumber)},
		{tmpl: "/x509pop/{{ index .URISanSelectors \"datacenter\" }}/{{ .Subject.CommonName | trimSuffix \".example.org\" | upper }}", want: "/spire/agent/x509pop/dc1/NODE1"},
		{tmpl: "x509pop/{{ .Fingerprint }}", err: "does not start with '/'"},
		{tmpl: "/x509pop/{{ .Subject.CommonName }} x", err: "spireid"},
		{tmpl: "/x509pop/{{ .NoSuchField }}", err: "NoSuchField"},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			res, err := run(t, f.newAttestor(t, tt.tmpl), payloadOf(t, ev), ev.Respond)
			if tt.err != "" {
				if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Attest: %v, want Internal saying %q", err, tt.err)
				}
				return
			}
			if err != nil || res.AgentID.Path() != tt.want {
				t.Fatalf("Attest = %v, %v; want %s", res.AgentID, err, tt.want)
			}
		})
	}
	if _, err := x509pop.ParsePathTemplate("/{{ sprigOnly .Fingerprint }}"); err == nil {
		t.Fatal("a template with an unknown function parsed")
	}
}

func TestConfigFromPluginData(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	ca1, ca2 := filepath.Join(dir, "ca1.pem"), filepath.Join(dir, "ca2.pem")
	os.WriteFile(ca1, x509poptest.PEM(f.root.Cert), 0o600)
	os.WriteFile(ca2, x509poptest.PEM(f.other.Cert, f.inter.Cert), 0o600)
	os.WriteFile(filepath.Join(dir, "empty.pem"), nil, 0o600)
	zero, three := 0, 3
	tests := []struct {
		name  string
		d     x509pop.ServerPluginData
		roots int
		err   string
	}{
		{"one path", x509pop.ServerPluginData{CABundlePath: ca1}, 1, ""},
		{"two paths", x509pop.ServerPluginData{CABundlePaths: []string{ca1, ca2}, MaxIntermediates: &three}, 3, ""},
		{"both", x509pop.ServerPluginData{CABundlePath: ca1, CABundlePaths: []string{ca2}}, 0, "only one of ca_bundle_path or ca_bundle_paths"},
		{"neither", x509pop.ServerPluginData{}, 0, "one of ca_bundle_path or ca_bundle_paths must be configured"},
		{"missing file", x509pop.ServerPluginData{CABundlePath: filepath.Join(dir, "nope")}, 0, "unable to load trust bundle"},
		{"no certificates", x509pop.ServerPluginData{CABundlePath: filepath.Join(dir, "empty.pem")}, 0, "no PEM certificates"},
		{"spiffe mode", x509pop.ServerPluginData{Mode: "spiffe"}, 0, `mode "spiffe" is not supported`},
		{"bad limit", x509pop.ServerPluginData{CABundlePath: ca1, MaxRSAKeySize: &zero}, 0, "max_rsa_key_size must be greater than 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := x509pop.ConfigFromPluginData(td, tt.d)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || len(cfg.Roots) != tt.roots {
				t.Fatalf("cfg %+v, %v; want %d roots", cfg, err, tt.roots)
			}
			if _, err := x509pop.NewAttestor(cfg); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := x509pop.NewAttestor(x509pop.Config{TrustDomain: td}); err == nil {
		t.Fatal("NewAttestor without roots")
	}
	if _, err := x509pop.NewAttestor(x509pop.Config{Roots: []*x509.Certificate{f.root.Cert}}); err == nil {
		t.Fatal("NewAttestor without trust domain")
	}
	if _, err := x509pop.NewAttestor(x509pop.Config{TrustDomain: td, Roots: []*x509.Certificate{f.root.Cert}, AgentPathTemplate: "{{"}); err == nil {
		t.Fatal("NewAttestor with a broken template")
	}
}

func TestEvidence(t *testing.T) {
	f := newFixture(t)
	leaf, key := f.inter.Issue(t, f.defaultValid)
	dir := t.TempDir()
	kp, cp, ip := x509poptest.WriteFiles(t, dir, key, leaf, f.inter.Cert)
	ev, err := x509pop.NewEvidence(x509pop.AgentPluginData{PrivateKeyPath: kp, CertificatePath: cp, IntermediatesPath: ip}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type() != "x509pop" {
		t.Fatalf("Type = %q", ev.Type())
	}
	if _, err := ev.Respond(context.Background(), []byte(`{}`)); err == nil {
		t.Fatal("Respond before Payload")
	}
	p := payloadOf(t, ev)
	var d struct{ Certificates [][]byte }
	if err := json.Unmarshal(p, &d); err != nil || len(d.Certificates) != 2 || !bytes.Equal(d.Certificates[0], leaf.Raw) || !bytes.Equal(d.Certificates[1], f.inter.Cert.Raw) {
		t.Fatalf("payload %s (%v), want {certificates:[leaf, intermediate]}", p, err)
	}
	for _, ch := range []string{`{`, `{"rsa_signature":{"nonce":"` + strings.Repeat("A", 43) + `="}}`, `{"ecdsa_signature":{"nonce":"AAAA"}}`} {
		if _, err := ev.Respond(context.Background(), []byte(ch)); err == nil {
			t.Errorf("Respond(%s) accepted", ch)
		}
	}
	otherLeaf, _ := f.inter.Issue(t, f.defaultValid)
	os.WriteFile(cp, x509poptest.PEM(otherLeaf), 0o600)
	if _, err := ev.Payload(context.Background()); err == nil {
		t.Fatal("Payload with a certificate that does not match the key")
	}
	for name, d := range map[string]x509pop.AgentPluginData{
		"no key":            {CertificatePath: cp},
		"no certificate":    {PrivateKeyPath: kp},
		"missing files":     {PrivateKeyPath: filepath.Join(dir, "x"), CertificatePath: cp},
		"bad intermediates": {PrivateKeyPath: kp, CertificatePath: cp, IntermediatesPath: kp},
	} {
		if _, err := x509pop.NewEvidence(d, nil); err == nil {
			t.Errorf("%s: NewEvidence accepted", name)
		}
	}
}

func TestSignResponseKeyTypes(t *testing.T) {
	ch := &x509pop.Challenge{ECDSASignature: &x509pop.NonceChallenge{Nonce: make([]byte, 32)}}
	if _, err := x509pop.SignResponse(&counter{}, crypto.PrivateKey("not a key"), ch); err == nil {
		t.Fatal("SignResponse with an unsupported key")
	}
	if _, err := x509pop.SignResponse(errReader{}, nil, ch); err == nil {
		t.Fatal("SignResponse without randomness")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func (f *fixture) rootCerts() []*x509.Certificate { return []*x509.Certificate{f.root.Cert} }
