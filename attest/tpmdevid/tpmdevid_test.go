package tpmdevid_test

import (
	"context"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/tpmdevid"
	"github.com/signet-id/signet/attest/tpmdevid/tpmdevidtest"
	"github.com/signet-id/signet/attest/x509pop/x509poptest"
	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// pki is the test manufacturer: a DevID root and intermediate, and an
// endorsement CA.
type pki struct {
	now                   time.Time
	devIDRoot, devIDInter *x509poptest.CA
	ekCA                  *x509poptest.CA
}

func newPKI(t testing.TB) *pki {
	now := time.Now()
	root := x509poptest.NewCA(t, "devid-root", nil, now.Add(-time.Hour))
	return &pki{
		now:        now,
		devIDRoot:  root,
		devIDInter: x509poptest.NewCA(t, "devid-intermediate", root, now.Add(-time.Hour)),
		ekCA:       x509poptest.NewCA(t, "tpm-manufacturer", nil, now.Add(-time.Hour)),
	}
}

func (p *pki) options(cn string) tpmdevidtest.Options {
	return tpmdevidtest.Options{
		EKCA: p.ekCA, DevIDCA: p.devIDInter, Intermediates: []*x509poptest.CA{p.devIDInter},
		DevID:         x509poptest.Leaf{CN: cn, NotBefore: p.now.Add(-time.Minute), NotAfter: p.now.Add(time.Hour)},
		DevIDPassword: "devid-pass",
	}
}

func (p *pki) attestor(t testing.TB, now time.Time) *tpmdevid.Attestor {
	t.Helper()
	a, err := tpmdevid.NewAttestor(tpmdevid.Config{
		TrustDomain: td, DevIDRoots: []*x509.Certificate{p.devIDRoot.Cert}, EKRoots: []*x509.Certificate{p.ekCA.Cert},
		Clock: fakeclock.New(now),
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func evidence(t testing.TB, d *tpmdevidtest.Device) *tpmdevid.Evidence {
	t.Helper()
	ev, err := tpmdevid.NewEvidence(d.PluginData("devid-pass"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ev.Close)
	return ev
}

func payload(t testing.TB, ev *tpmdevid.Evidence) []byte {
	t.Helper()
	p, err := ev.Payload(context.Background())
	if err != nil {
		t.Fatalf("Payload: %v", err)
	}
	return p
}

// respond answers challenges with ev, recording each response.
func respond(ev *tpmdevid.Evidence, rec *[]byte) attest.Challenger {
	return func(ctx context.Context, ch []byte) ([]byte, error) {
		r, err := ev.Respond(ctx, ch)
		if rec != nil {
			*rec = r
		}
		return r, err
	}
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("error %v, want %s containing %q", err, code, msg)
	}
}

// TestAttestSWTPM: a DevID provisioned in a real swtpm attests with
// SPIRE's agent ID and selectors, RSA and ECC DevID keys alike, and again
// with a fresh session (reattestation).
func TestAttestSWTPM(t *testing.T) {
	p := newPKI(t)
	for _, ecc := range []bool{false, true} {
		o := p.options("node-1")
		o.ECC = ecc
		d := tpmdevidtest.Provision(t, o)
		a := p.attestor(t, p.now)
		ev := evidence(t, d)
		for round := 0; round < 2; round++ {
			res, err := a.Attest(context.Background(), attest.NodeRequest{Payload: payload(t, ev), Challenge: respond(ev, nil)})
			if err != nil {
				t.Fatalf("ecc=%v round %d: %v", ecc, round, err)
			}
			want := "spiffe://example.org/spire/agent/tpm_devid/" + tpmdevid.Fingerprint(d.DevIDCert)
			if res.AgentID.String() != want || !res.CanReattest {
				t.Fatalf("result %v %v, want %s, reattestable", res.AgentID, res.CanReattest, want)
			}
			var got []string
			for _, s := range res.Selectors {
				got = append(got, s.Type+":"+s.Value)
			}
			wantSel := []string{
				"tpm_devid:subject:cn:node-1",
				"tpm_devid:issuer:cn:devid-intermediate",
				"tpm_devid:ca:fingerprint:" + tpmdevid.Fingerprint(p.devIDInter.Cert),
				"tpm_devid:ca:fingerprint:" + tpmdevid.Fingerprint(p.devIDRoot.Cert),
			}
			if strings.Join(got, "\n") != strings.Join(wantSel, "\n") {
				t.Fatalf("selectors\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantSel, "\n"))
			}
		}
	}
}

// TestAttestSWTPMDevicePath: tpm_device_path naming a swtpm Unix socket
// (go-tpm opens a socket as a TPM simulator, one connection per command,
// as spire-agent's tpm_devid does) attests like the TCP transport.
func TestAttestSWTPMDevicePath(t *testing.T) {
	p := newPKI(t)
	dir, err := os.MkdirTemp("", "tpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := tpmdevidtest.ProvisionAt(t, tpmdevidtest.StartSWTPMUnix(t, dir), p.options("node-1"))
	if pd := d.PluginData(""); pd.TPMDevicePath == "" || pd.TPMTCPAddress != "" {
		t.Fatalf("plugin data %+v, want tpm_device_path", pd)
	}
	ev := evidence(t, d)
	res, err := p.attestor(t, p.now).Attest(context.Background(), attest.NodeRequest{Payload: payload(t, ev), Challenge: respond(ev, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if want := "spiffe://example.org/spire/agent/tpm_devid/" + tpmdevid.Fingerprint(d.DevIDCert); res.AgentID.String() != want {
		t.Fatalf("agent ID %v, want %s", res.AgentID, want)
	}
}
