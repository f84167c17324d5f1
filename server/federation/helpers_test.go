package federation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/etcdserver/etcdtest"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var testEtcd *etcdserver.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &testEtcd) }

var tds etcdtest.TrustDomains

// newStore is a real store on the shared embedded etcd, below a trust
// domain of its own.
func newStore(t *testing.T) (*store.Store, spiffeid.TrustDomain) {
	t.Helper()
	td := tds.Next(t)
	s, err := store.New(testEtcd.Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(etcdtest.Context(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, td
}

// ca is a SPIFFE CA of a trust domain: a self-signed certificate naming
// spiffe://<td> in its URI SAN, as SPIRE's and Signet's CAs do.
type ca struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  crypto.Signer
}

func newCA(t *testing.T, td string) *ca {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tdv := spiffeid.RequireTrustDomainFromString(td)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: td + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs: []*url.URL{tdv.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &ca{td: tdv, cert: cert, key: key}
}

// svid issues a TLS certificate for id (and the DNS name localhost).
func (c *ca) svid(t *testing.T, id string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		URIs: []*url.URL{u}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (c *ca) bundle(hint time.Duration) *spiffebundle.Bundle {
	b := spiffebundle.New(c.td)
	b.AddX509Authority(c.cert)
	b.SetRefreshHint(hint)
	return b
}

func (c *ca) bundleJSON(t *testing.T, hint time.Duration) []byte {
	t.Helper()
	data, err := c.bundle(hint).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// endpoint is a bundle endpoint stand-in on loopback over real TLS: it
// serves whatever body (and status) the test sets.
type endpoint struct {
	srv    *httptest.Server
	body   atomic.Pointer[[]byte]
	status atomic.Int32
	hits   chan struct{}
}

func newEndpoint(t *testing.T, cert tls.Certificate) *endpoint {
	t.Helper()
	e := &endpoint{hits: make(chan struct{}, 64)}
	e.status.Store(http.StatusOK)
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case e.hits <- struct{}{}:
		default:
		}
		w.WriteHeader(int(e.status.Load()))
		if b := e.body.Load(); b != nil {
			_, _ = w.Write(*b)
		}
	}))
	e.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	e.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) serve(body []byte) { e.body.Store(&body) }

func (e *endpoint) url() string { return e.srv.URL }
