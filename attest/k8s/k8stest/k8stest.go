// Package k8stest is a kubelet stand-in for the k8s workload attestor's
// tests (real kubelets need a node): HTTPS on 127.0.0.1 serving GET /pods
// with a PodList, authenticating as a kubelet with webhook authentication
// does, and the PodList fixture it serves by default.
package k8stest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
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

// The pods of PodList: the web pod (containers web and envoy, init
// container migrate) and a pending pod whose container has not started.
const (
	WebPodUID        = "6f2b1c3d-8e4a-4b5c-9d6e-7f8091a2b3c4"
	WebContainerID   = "3f8a1c2e9b7d4a6f0e5c8b2a1d9f7e6c4b3a2918f7e6d5c4b3a29180f7e6d5c4"
	EnvoyContainerID = "9d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6"
	InitContainerID  = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
	PendingPodUID    = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
)

var (
	// PodList is a kubelet's /pods answer (a v1.PodList) listing the web
	// and the pending pod.
	//go:embed pod_list.json
	PodList []byte
	// DuplicatePodList lists the web pod twice, under two UIDs.
	//go:embed pod_list_duplicate.json
	DuplicatePodList []byte
)

// PodListWith returns PodList with the web pod's UID and web container's
// ID replaced, to list a real container.
func PodListWith(podUID, webContainerID string) []byte {
	b := bytes.ReplaceAll(PodList, []byte(WebPodUID), []byte(podUID))
	return bytes.ReplaceAll(b, []byte(WebContainerID), []byte(webContainerID))
}

// Kubelet is the stand-in: a bearer token or a client certificate from
// its client CA is accepted, anything else is answered 401.
type Kubelet struct {
	srv *httptest.Server
	// Token is the bearer token it accepts.
	Token string
	// ClientCA issues the client certificates it accepts.
	ClientCA *x509poptest.CA
	// ServingCA issued its serving certificate (for 127.0.0.1).
	ServingCA *x509poptest.CA

	mu sync.Mutex
	// lists returns the pod list JSON for the n-th request (from 1).
	lists    func(n int) []byte
	requests int
}

// New starts a kubelet stand-in serving podList, stopped at the test's
// end.
func New(t testing.TB, podList []byte) *Kubelet {
	t.Helper()
	k := &Kubelet{
		Token:    "kubelet-reader-token",
		ClientCA: x509poptest.NewCA(t, "kubelet client CA", nil, time.Now().Add(-time.Hour)),
		lists:    func(int) []byte { return podList },
	}
	k.srv = httptest.NewUnstartedServer(http.HandlerFunc(k.serve))
	pool := x509.NewCertPool()
	pool.AddCert(k.ClientCA.Cert)
	k.ServingCA = x509poptest.NewCA(t, "kubelet serving CA", nil, time.Now().Add(-time.Hour))
	k.srv.TLS = &tls.Config{
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
		Certificates: []tls.Certificate{servingCert(t, k.ServingCA)},
	}
	k.srv.StartTLS()
	t.Cleanup(k.srv.Close)
	return k
}

// SetLists makes the n-th authenticated request (from 1) be answered
// with lists(n).
func (k *Kubelet) SetLists(lists func(n int) []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lists = lists
}

func (k *Kubelet) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/pods" {
		http.NotFound(w, r)
		return
	}
	authed := r.Header.Get("Authorization") == "Bearer "+k.Token ||
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

// Requests returns how many authenticated requests it has answered.
func (k *Kubelet) Requests() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.requests
}

// Port returns its HTTPS port on 127.0.0.1.
func (k *Kubelet) Port(t testing.TB) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(k.srv.Listener.Addr().String())
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// CAFile writes its serving CA as a PEM file (kubelet_ca_path).
func (k *Kubelet) CAFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubelet-ca.crt")
	if err := os.WriteFile(p, x509poptest.PEM(k.ServingCA.Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TokenFile writes a service account token file (token_path).
func TokenFile(t testing.TB, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ClientCert issues a client certificate from ca and returns its files
// (certificate_path, private_key_path).
func ClientCert(t testing.TB, ca *x509poptest.CA) (certPath, keyPath string) {
	t.Helper()
	now := time.Now()
	leaf, key := ca.Issue(t, x509poptest.Leaf{CN: "signet-agent", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	keyPath, certPath, _ = x509poptest.WriteFiles(t, t.TempDir(), key, leaf)
	return certPath, keyPath
}

// ReadOnly serves podList on the kubelet's read-only port's terms: plain
// HTTP on 127.0.0.1, no authentication. It returns the port.
func ReadOnly(t testing.TB, podList []byte) int {
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
func servingCert(t testing.TB, ca *x509poptest.CA) tls.Certificate {
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
