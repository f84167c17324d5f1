package agent_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/tpmdevid"
	"github.com/signet-id/signet/attest/tpmdevid/tpmdevidtest"
	"github.com/signet-id/signet/attest/x509pop/x509poptest"
	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
)

// TestAttestAgentTPMDevID runs tpm_devid over the real AttestAgent stream
// with a DevID in a real swtpm: the agent ID, selectors and
// reattestability are recorded; a replayed response, or a TPM whose EK
// certificate is not from a trusted manufacturer, is refused with
// PermissionDenied and stores nothing.
func TestAttestAgentTPMDevID(t *testing.T) {
	now := time.Now()
	root := x509poptest.NewCA(t, "devid-root", nil, now.Add(-time.Hour))
	ekCA := x509poptest.NewCA(t, "tpm-manufacturer", nil, now.Add(-time.Hour))
	a, err := tpmdevid.NewAttestor(tpmdevid.Config{TrustDomain: td, DevIDRoots: []*x509.Certificate{root.Cert}, EKRoots: []*x509.Certificate{ekCA.Cert}, Clock: fakeclock.New(now)})
	if err != nil {
		t.Fatal(err)
	}
	opts := func(ek *x509poptest.CA) tpmdevidtest.Options {
		return tpmdevidtest.Options{EKCA: ek, DevIDCA: root, DevID: x509poptest.Leaf{CN: "node-1", NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)}}
	}
	dev := tpmdevidtest.Provision(t, opts(ekCA))
	e := newEnv(t, a)
	evidence := func(d *tpmdevidtest.Device) *tpmdevid.Evidence {
		ev, err := tpmdevid.NewEvidence(d.PluginData(""))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ev.Close)
		return ev
	}
	payload := func(ev *tpmdevid.Evidence) []byte {
		p, err := ev.Payload(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	var recorded []byte
	respond := func(ev *tpmdevid.Evidence) func([]byte) []byte {
		return func(ch []byte) []byte {
			r, err := ev.Respond(context.Background(), ch)
			if err != nil {
				t.Errorf("Respond: %v", err)
			}
			recorded = r
			return r
		}
	}

	ev := evidence(dev)
	res, err := e.attestStream(t, tpmdevid.Type, payload(ev), respond(ev))
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	wantID := "spiffe://example.org/spire/agent/tpm_devid/" + tpmdevid.Fingerprint(dev.DevIDCert)
	if got := res.GetSvid().GetId(); got.GetPath() != "/spire/agent/tpm_devid/"+tpmdevid.Fingerprint(dev.DevIDCert) || !res.Reattestable {
		t.Fatalf("result %v, want %s, reattestable", res, wantID)
	}
	rec, err := e.store.GetAgent(testContext(t), spiffeid.RequireFromString(wantID))
	if err != nil {
		t.Fatal(err)
	}
	if rec.AttestationType != tpmdevid.Type || !rec.CanReattest || len(rec.Selectors) != 3 ||
		rec.Selectors[0].Value != "subject:cn:node-1" || rec.Selectors[1].Value != "issuer:cn:devid-root" ||
		rec.Selectors[2].Value != "ca:fingerprint:"+tpmdevid.Fingerprint(root.Cert) {
		t.Fatalf("agent record %v", rec)
	}
	replayed := recorded

	rogue := tpmdevidtest.Provision(t, opts(x509poptest.NewCA(t, "rogue-manufacturer", nil, now.Add(-time.Hour))))
	evRogue := evidence(rogue)
	tests := []struct {
		name   string
		ev     *tpmdevid.Evidence
		answer func(*tpmdevid.Evidence) func([]byte) []byte
		code   codes.Code
		msg    string
	}{
		{"replayed response", ev, func(*tpmdevid.Evidence) func([]byte) []byte { return func([]byte) []byte { return replayed } }, codes.PermissionDenied, "devID challenge verification failed"},
		{"untrusted EK", evRogue, respond, codes.PermissionDenied, "cannot verify EK signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.attestStream(t, tpmdevid.Type, payload(tt.ev), tt.answer(tt.ev))
			tt.ev.Close()
			if res.GetSvid() != nil {
				t.Fatalf("an SVID was issued (%v)", err)
			}
			wantStatus(t, err, tt.code, tt.msg)
			if n, err := e.store.CountAgents(testContext(t), store.AgentFilter{}); err != nil || n != 1 {
				t.Fatalf("%d agents stored (%v), want only the first", n, err)
			}
		})
	}
}
