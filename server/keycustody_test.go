package server_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/keymanager/kms"
	"github.com/signet-id/signet/ca/keymanager/kms/softhsmtest"
	cav1 "github.com/signet-id/signet/proto/signet/ca/v1"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// runServer starts a server on cfg and returns it once ready with a stop
// function, or the error Run returned when it refused to start.
func runServer(t *testing.T, cfg server.Config) (*testServer, func(), error) {
	t.Helper()
	srv, err := server.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		return nil, nil, err
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("server did not start within 60s")
	}
	admin, err := grpc.NewClient("unix://"+srv.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	for _, c := range srv.CA().Bundle().X509Authorities() {
		roots.AddCert(c)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		admin.Close()
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return &testServer{Server: srv, admin: admin, roots: roots}, stop, nil
}

func hsmConfig(dir, uri string) server.Config {
	return server.Config{
		TrustDomain: td,
		DataDir:     filepath.Join(dir, "server"),
		BindAddress: "127.0.0.1:0",
		AdminSocket: filepath.Join(dir, "api.sock"),
		KeyManager:  &server.KeyManagerConfig{Kind: server.KeyManagerKMS, URI: uri},
	}
}

// TestPKCS11ServerKeysInHSM: a server whose KeyManager is a real SoftHSM2
// token creates its CA and JWT keys there (not extractable), signs agent
// SVIDs that go-spiffe verifies, reports the key URIs over signet.ca.v1
// (what `signet ca show` prints), and reuses the keys after a restart. A
// wrong PIN, a state whose key manager is gone, and a key missing from the
// token each stop the start with what is wrong.
func TestPKCS11ServerKeysInHSM(t *testing.T) {
	tk := softhsmtest.New(t, "signet-server")
	dir, err := os.MkdirTemp("", "sghsm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := hsmConfig(dir, tk.URI())
	s, stop, err := runServer(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys := tk.PrivateKeys(t)
	if len(keys) != 2 {
		t.Fatalf("token holds %d keys, want the X.509 CA's and the JWT key", len(keys))
	}
	for _, k := range keys {
		if k.Extractable {
			t.Fatalf("key %s is extractable", k.Label)
		}
	}
	_, svid := s.attest(t)
	var chain []*x509.Certificate
	for _, der := range svid.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	if _, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, s.CA().Bundle().X509Authorities())); err != nil {
		t.Fatalf("go-spiffe refuses the agent SVID signed in the HSM: %v", err)
	}
	list, err := cav1.NewCAClient(s.admin).ListAuthorities(testContext(t), &cav1.ListAuthoritiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range append(list.X509Authorities, list.JwtAuthorities...) {
		if a.KeyManager != "pkcs11" || !strings.HasPrefix(a.KeyUri, "pkcs11:id=") || strings.Contains(a.KeyUri, "pin") {
			t.Fatalf("ListAuthorities: %v", a)
		}
	}
	active := s.CA().X509Authorities()[0]
	jwtRef := s.CA().JWTAuthorities()[0].KeyURI
	stop()

	s, stop, err = runServer(t, cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if got := s.CA().X509Authorities()[0]; got.ID != active.ID || got.KeyURI != active.KeyURI || len(tk.PrivateKeys(t)) != 2 {
		t.Fatalf("restart: active %s %s, want %s %s reused", got.ID, got.KeyURI, active.ID, active.KeyURI)
	}
	stop()

	wrong := filepath.Join(dir, "wrong-pin")
	if err := os.WriteFile(wrong, []byte("123456"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		km   *server.KeyManagerConfig
		want string
	}{
		{"wrong PIN", &server.KeyManagerConfig{Kind: server.KeyManagerKMS, URI: strings.Replace(tk.URI(), tk.PINFile, wrong, 1)}, "the token refused the PIN from pin-source (CKR_PIN_INCORRECT)"},
		{"PIN in the URI", &server.KeyManagerConfig{Kind: server.KeyManagerKMS, URI: tk.URI() + "&pin-value=" + tk.PIN}, "must not hold the PIN"},
		{"no key manager", nil, "no key manager is configured"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := cfg
			bad.KeyManager = c.km
			_, _, err := runServer(t, bad)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), tk.PIN) {
				t.Fatalf("start: %v, want %q", err, c.want)
			}
		})
	}

	km, err := kms.Open(context.Background(), kms.Config{URI: tk.URI()})
	if err != nil {
		t.Fatal(err)
	}
	if err := km.DeleteKey(context.Background(), jwtRef); err != nil {
		t.Fatal(err)
	}
	km.Close()
	_, _, err = runServer(t, cfg)
	if err == nil || !strings.Contains(err.Error(), ca.ErrKeyNotFound.Error()) || !strings.Contains(err.Error(), jwtRef) {
		t.Fatalf("start with the JWT key gone from the token: %v", err)
	}
}

// TestPKCS11HASharesKeysByReference: two replicas on a three-member etcd
// cluster share one SoftHSM2 token: the sealed CA state names the keys,
// the scheduler leader's rotations create the next keys in the token, and
// the other replica signs with the same keys (no copies: the token holds
// one key per authority).
func TestPKCS11HASharesKeysByReference(t *testing.T) {
	tk := softhsmtest.New(t, "signet-ha")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "sghh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	members, err := etcdserver.StartCluster(ctx, filepath.Join(dir, "etcd"), 3)
	if err != nil {
		t.Fatal(err)
	}
	var endpoints []string
	for _, m := range members {
		t.Cleanup(func() { m.Close() })
		endpoints = append(endpoints, m.Endpoints()...)
	}
	kek := filepath.Join(dir, "kek")
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(kek, key, 0o600); err != nil {
		t.Fatal(err)
	}
	var replicas []*testServer
	for i := range 2 {
		replicas = append(replicas, startServerWith(t, func(c *server.Config) {
			c.DataDir = filepath.Join(dir, fmt.Sprintf("r%d", i))
			c.AdminSocket = filepath.Join(dir, fmt.Sprintf("r%d.sock", i))
			c.Etcd = server.EtcdConfig{Endpoints: endpoints, CertFile: members[0].TLS().CertFile, KeyFile: members[0].TLS().KeyFile, CAFile: members[0].TLS().CAFile}
			c.CAKEKFile = kek
			c.CATTL = 20 * time.Second
			c.RotationInterval = time.Hour
			c.KeyManager = &server.KeyManagerConfig{Kind: server.KeyManagerKMS, URI: tk.URI()}
		}))
	}
	checkCALifecycle(t, replicas[0].CA(), replicas[1].CA())
	// The other replica picks up a rotation from etcd's watch: compare
	// until both have seen the same state (bounded).
	agree := func() (bool, string) {
		a, b := replicas[0].CA().X509Authorities(), replicas[1].CA().X509Authorities()
		if len(a) != len(b) {
			return false, fmt.Sprintf("%+v / %+v", a, b)
		}
		for i := range a {
			if a[i].KeyManager != "pkcs11" || a[i].KeyURI != b[i].KeyURI {
				return false, fmt.Sprintf("%+v / %+v", a, b)
			}
		}
		return true, ""
	}
	for i := 0; ; i++ {
		ok, why := agree()
		if ok {
			break
		}
		if i == 100 {
			t.Fatalf("replicas disagree on the keys: %s", why)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Each authority has one key in the token: no replica made its own.
	want := map[string]bool{}
	for _, r := range replicas {
		for _, x := range append(r.CA().X509Authorities(), r.CA().JWTAuthorities()...) {
			want[x.KeyURI] = true
		}
	}
	if got := len(tk.PrivateKeys(t)); got != len(want) {
		t.Fatalf("token holds %d keys for %d authorities", got, len(want))
	}
	// The follower signs with the leader's key, found in the token.
	replicas[1].roots = x509.NewCertPool()
	for _, c := range replicas[1].CA().Bundle().X509Authorities() {
		replicas[1].roots.AddCert(c)
	}
	_, svid := replicas[1].attest(t)
	if len(svid.Certificate) == 0 {
		t.Fatal("no SVID from the second replica")
	}
}
