package k8s

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/x509pop/x509poptest"
)

// fakeKubelet is a kubelet stand-in (real kubelets need a node): HTTPS on
// 127.0.0.1 serving GET /pods, authenticating as a kubelet does with
// webhook authentication: a bearer token or a client certificate from
// its client CA, 401 otherwise.
type fakeKubelet struct {
	srv       *httptest.Server
	token     string
	clientCA  *x509poptest.CA
	servingCA *x509poptest.CA // issued the serving certificate (for 127.0.0.1)

	mu sync.Mutex
	// lists returns the pod list JSON for the n-th request (from 1).
	lists    func(n int) []byte
	requests int
}

func newFakeKubelet(t *testing.T, podList []byte) *fakeKubelet {
	t.Helper()
	k := &fakeKubelet{
		token:    "kubelet-reader-token",
		clientCA: x509poptest.NewCA(t, "kubelet client CA", nil, time.Now().Add(-time.Hour)),
		lists:    func(int) []byte { return podList },
	}
	k.srv = httptest.NewUnstartedServer(http.HandlerFunc(k.serve))
	pool := x509.NewCertPool()
	pool.AddCert(k.clientCA.Cert)
	k.servingCA = x509poptest.NewCA(t, "kubelet serving CA", nil, time.Now().Add(-time.Hour))
	k.srv.TLS = &tls.Config{
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
		Certificates: []tls.Certificate{servingCert(t, k.servingCA)},
	}
	k.srv.StartTLS()
	t.Cleanup(k.srv.Close)
	return k
}

func (k *fakeKubelet) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/pods" {
		http.NotFound(w, r)
		return
	}
	authed := r.Header.Get("Authorization") == "Bearer "+k.token ||
		(r.TLS != nil && len(r.TLS.VerifiedChains) > 0)
	if !authed {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	k.mu.Lock()
	k.requests++
	body := k.lists(k.requests)
	k.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (k *fakeKubelet) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.requests
}

func (k *fakeKubelet) port(t *testing.T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(k.srv.Listener.Addr().String())
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// caFile writes the kubelet's serving CA as the CA file the attestor
// trusts.
func (k *fakeKubelet) caFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubelet-ca.crt")
	if err := os.WriteFile(p, x509poptest.PEM(k.servingCA.Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tokenFile writes a service account token file.
func tokenFile(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clientCert issues a client certificate from ca and returns its files.
func clientCert(t *testing.T, ca *x509poptest.CA) (certPath, keyPath string) {
	t.Helper()
	now := time.Now()
	leaf, key := ca.Issue(t, x509poptest.Leaf{CN: "signet-agent", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	keyPath, certPath, _ = x509poptest.WriteFiles(t, t.TempDir(), key, leaf)
	return certPath, keyPath
}

// httptestPlain serves podList on the kubelet's read-only port's terms:
// plain HTTP, no authentication. It returns the port.
func httptestPlain(t *testing.T, podList []byte) int {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/pods" || r.Header.Get("Authorization") != "" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		_, _ = w.Write(podList)
	}))
	t.Cleanup(srv.Close)
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// servingCert issues the kubelet's serving certificate for 127.0.0.1
// (kubelets' own self-signed certificates name the node).
func servingCert(t *testing.T, ca *x509poptest.CA) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: "node-1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
