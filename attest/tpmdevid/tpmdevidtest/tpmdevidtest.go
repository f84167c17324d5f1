// Package tpmdevidtest runs real software TPMs (swtpm) for tpm_devid
// tests and provisions them as a manufacturer would: an EK certificate in
// its NV index, signed by a test endorsement CA, and a DevID key created
// in the TPM with a DevID certificate signed by a test DevID CA.
package tpmdevidtest

import (
	"context"
	"crypto"
	"crypto/x509"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
	"github.com/signet-id/signet/attest/tpmdevid"
	"github.com/signet-id/signet/attest/x509pop/x509poptest"
)

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartSWTPM starts a fresh swtpm (TPM 2.0, started up) on loopback TCP
// and returns its command address; it is killed at the end of the test.
// The test is skipped when swtpm is not installed (scripts/install-debs.sh).
func StartSWTPM(t testing.TB) string {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		port, ctrl := freePort(t), freePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if startSWTPM(t, "type=tcp,port="+strconv.Itoa(port)+",bindaddr=127.0.0.1", "type=tcp,port="+strconv.Itoa(ctrl)+",bindaddr=127.0.0.1", "tcp", addr) {
			return addr
		}
	}
	t.Fatal("swtpm did not start")
	return ""
}

// StartSWTPMUnix starts a fresh swtpm serving the TPM on a Unix socket in
// dir (keep dir short: socket paths are limited) and returns the socket's
// path, which go-tpm (and so spire-agent's tpm_device_path) opens as a
// TPM simulator.
func StartSWTPMUnix(t testing.TB, dir string) string {
	t.Helper()
	sock, ctrl := filepath.Join(dir, "tpm.sock"), filepath.Join(dir, "tpm.ctrl")
	if !startSWTPM(t, "type=unixio,path="+sock, "type=unixio,path="+ctrl, "unix", sock) {
		t.Fatal("swtpm did not start")
	}
	return sock
}

// startSWTPM runs swtpm with the server and ctrl channel specs until
// address (on network) accepts connections; false if it exited first.
func startSWTPM(t testing.TB, server, ctrl, network, address string) bool {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("swtpm is not installed: run scripts/install-debs.sh")
		}
		t.Skip("swtpm is not installed (scripts/install-debs.sh)")
	}
	cmd := exec.Command(bin, "socket", "--tpm2", "--server", server, "--ctrl", ctrl,
		"--tpmstate", "dir="+t.TempDir(), "--flags", "not-need-init,startup-clear")
	logf, err := os.Create(filepath.Join(t.TempDir(), "swtpm.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	for i := 0; i < 400; i++ {
		select {
		case <-exited:
			return false // the port was taken meanwhile
		default:
		}
		if c, err := net.Dial(network, address); err == nil {
			c.Close()
			t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
			return true
		}
		time.Sleep(25 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-exited
	b, _ := os.ReadFile(logf.Name())
	t.Fatalf("swtpm did not accept connections: %s", b)
	return false
}

// Device is a provisioned TPM: its address (TCP, or with Unix set a
// socket path) and the agent's DevID files.
type Device struct {
	Address                     string
	Unix                        bool
	CertPath, PrivPath, PubPath string
	// DevIDCert is the DevID certificate (the leaf).
	DevIDCert *x509.Certificate
	// EKCertDER is the EK certificate written to the NV index.
	EKCertDER []byte
}

// Options say how to provision.
type Options struct {
	EKCA, DevIDCA *x509poptest.CA
	// Intermediates are written after the DevID certificate.
	Intermediates []*x509poptest.CA
	// DevID describes the DevID certificate (CN, validity).
	DevID x509poptest.Leaf
	// ECC makes a P-256 DevID key instead of RSA-2048.
	ECC bool
	// DevIDPassword is the DevID key's auth value.
	DevIDPassword string
}

func dial(t testing.TB, addr string) (context.Context, func(), io.ReadWriteCloser) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	network := "tcp"
	if !strings.Contains(addr, ":") {
		network = "unix"
	}
	rw, err := tpmdevid.Dial(ctx, network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, func() { rw.Close(); cancel() }, rw
}

// ProvisionEK writes an EK certificate for the TPM's default RSA EK,
// signed by ca, to the EK certificate NV index (replacing one there).
func ProvisionEK(t testing.TB, addr string, ca *x509poptest.CA) []byte {
	t.Helper()
	_, done, rw := dial(t, addr)
	defer done()
	h, pubBlob, _, _, _, _, err := tpm2.CreatePrimaryEx(rw, tpm2.HandleEndorsement, tpm2.PCRSelection{}, "", "", tpmdevid.EKTemplateRSA())
	if err != nil {
		t.Fatal(err)
	}
	_ = tpm2.FlushContext(rw, h)
	pub, err := tpm2.DecodePublic(pubBlob)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pub.Key()
	if err != nil {
		t.Fatal(err)
	}
	cert := ca.IssueFor(t, x509poptest.Leaf{CN: "ek", NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: 0x20 /* keyEncipherment */}, key)
	idx := tpmutil.Handle(tpmdevid.EKCertificateHandleRSA)
	_ = tpm2.NVUndefineSpace(rw, "", tpm2.HandleOwner, idx)
	attrs := tpm2.AttrOwnerWrite | tpm2.AttrOwnerRead | tpm2.AttrAuthRead | tpm2.AttrAuthWrite | tpm2.AttrNoDA
	if err := tpm2.NVDefineSpace(rw, tpm2.HandleOwner, idx, "", "", nil, attrs, uint16(len(cert.Raw))); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(cert.Raw); off += 512 {
		end := min(off+512, len(cert.Raw))
		if err := tpm2.NVWrite(rw, tpm2.HandleOwner, idx, "", cert.Raw[off:end], uint16(off)); err != nil {
			t.Fatal(err)
		}
	}
	return cert.Raw
}

// devIDTemplate is a DevID key template: a non-restricted signing key
// fixed to the TPM, SHA-256 (RSASSA or ECDSA).
func devIDTemplate(ecc bool) tpm2.Public {
	attrs := tpm2.FlagSign | tpm2.FlagFixedTPM | tpm2.FlagFixedParent | tpm2.FlagSensitiveDataOrigin | tpm2.FlagUserWithAuth | tpm2.FlagNoDA
	if ecc {
		return tpm2.Public{Type: tpm2.AlgECC, NameAlg: tpm2.AlgSHA256, Attributes: attrs,
			ECCParameters: &tpm2.ECCParams{Sign: &tpm2.SigScheme{Alg: tpm2.AlgECDSA, Hash: tpm2.AlgSHA256}, CurveID: tpm2.CurveNISTP256}}
	}
	return tpm2.Public{Type: tpm2.AlgRSA, NameAlg: tpm2.AlgSHA256, Attributes: attrs,
		RSAParameters: &tpm2.RSAParams{Sign: &tpm2.SigScheme{Alg: tpm2.AlgRSASSA, Hash: tpm2.AlgSHA256}, KeyBits: 2048}}
}

// ProvisionDevID creates a DevID key under the TPM's high-range SRK and
// writes devid.priv, devid.pub (the TPM2_Create blobs) and devid.pem (the
// certificate signed by o.DevIDCA, then o.Intermediates' certificates).
func ProvisionDevID(t testing.TB, addr string, o Options) *Device {
	t.Helper()
	_, done, rw := dial(t, addr)
	defer done()
	srk := tpmdevid.SRKTemplateHighRSA()
	if o.ECC {
		srk = tpmdevid.SRKTemplateHighECC()
	}
	h, _, _, _, _, _, err := tpm2.CreatePrimaryEx(rw, tpm2.HandleOwner, tpm2.PCRSelection{}, "", "", srk)
	if err != nil {
		t.Fatal(err)
	}
	priv, pubBlob, _, _, _, err := tpm2.CreateKey(rw, h, tpm2.PCRSelection{}, "", o.DevIDPassword, devIDTemplate(o.ECC))
	_ = tpm2.FlushContext(rw, h)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tpm2.DecodePublic(pubBlob)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pub.Key()
	if err != nil {
		t.Fatal(err)
	}
	return WriteDevID(t, addr, o, priv, pubBlob, key)
}

// WriteDevID issues the DevID certificate for key and writes the files.
func WriteDevID(t testing.TB, addr string, o Options, priv, pub []byte, key crypto.PublicKey) *Device {
	t.Helper()
	cert := o.DevIDCA.IssueFor(t, o.DevID, key)
	dir := t.TempDir()
	d := &Device{Address: addr, Unix: !strings.Contains(addr, ":"), CertPath: filepath.Join(dir, "devid.pem"), PrivPath: filepath.Join(dir, "devid.priv"), PubPath: filepath.Join(dir, "devid.pub")}
	chain := []*x509.Certificate{cert}
	for _, ca := range o.Intermediates {
		chain = append(chain, ca.Cert)
	}
	for p, b := range map[string][]byte{d.CertPath: x509poptest.PEM(chain...), d.PrivPath: priv, d.PubPath: pub} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d.DevIDCert = cert
	return d
}

// Provision starts a swtpm and provisions its EK certificate and a DevID.
func Provision(t testing.TB, o Options) *Device {
	t.Helper()
	return ProvisionAt(t, StartSWTPM(t), o)
}

// ProvisionAt provisions the EK certificate and a DevID in the TPM at
// addr (a TCP address, or a Unix socket path).
func ProvisionAt(t testing.TB, addr string, o Options) *Device {
	t.Helper()
	ek := ProvisionEK(t, addr, o.EKCA)
	d := ProvisionDevID(t, addr, o)
	d.EKCertDER = ek
	return d
}

// PluginData is the agent's plugin_data for d: tpm_tcp_address, or
// tpm_device_path for a Unix socket.
func (d *Device) PluginData(password string) tpmdevid.AgentPluginData {
	p := tpmdevid.AgentPluginData{DevIDCertPath: d.CertPath, DevIDPrivPath: d.PrivPath, DevIDPubPath: d.PubPath, DevIDPassword: password}
	if d.Unix {
		p.TPMDevicePath = d.Address
	} else {
		p.TPMTCPAddress = d.Address
	}
	return p
}
