package eventlog

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/signet-id/signet/server/etcdserver"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// t0 is the fake clock's start.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newFakeClock() *fakeclock.Clock { return fakeclock.New(t0) }

// startEtcd starts an embedded etcd member for the test.
func startEtcd(t *testing.T) *etcdserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := etcdserver.Start(ctx, etcdserver.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// newClient opens another client to srv (another "replica").
func newClient(t *testing.T, srv *etcdserver.Server) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func newLog(t *testing.T, cli *clientv3.Client, opts ...Option) *Log {
	t.Helper()
	l, err := New(cli, "/signet/example.org/events/", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// pki is a test trust domain: a root CA and a server SVID signed by it.
type pki struct {
	root      *x509.Certificate
	rootKey   crypto.Signer
	serverKey crypto.Signer
	server    *x509.Certificate
}

func newPKI(t *testing.T, notBefore, notAfter time.Time) *pki {
	t.Helper()
	rootKey := mustKey(t)
	rootTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"Signet test"}, CommonName: "root"},
		NotBefore:             notBefore.Add(-time.Hour),
		NotAfter:              notAfter.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: "example.org"}},
	}
	root := mustCert(t, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	p := &pki{root: root, rootKey: rootKey}
	p.serverKey = mustKey(t)
	p.server = p.leaf(t, p.serverKey.Public(), "/spire/server", notBefore, notAfter)
	return p
}

func (p *pki) leaf(t *testing.T, pub crypto.PublicKey, path string, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: path}},
	}
	return mustCert(t, tmpl, p.root, pub, p.rootKey)
}

func (p *pki) keys() KeySource { return StaticKey(p.serverKey, []*x509.Certificate{p.server}) }

func mustKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCert(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
