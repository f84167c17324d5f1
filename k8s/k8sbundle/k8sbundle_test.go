package k8sbundle_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/conformance/kubetest"
	"github.com/signet-id/signet/k8s/k8sbundle"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls cond for up to a minute.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 600 {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not after a minute", what)
}

// replica is how runServer runs one server.
type replica struct {
	kc  kubernetes.Interface
	ns  string
	reg *prometheus.Registry
	log *slog.Logger
	// configure adjusts the server's configuration (HA: the shared etcd).
	configure func(*server.Config)
	// followerPasses, if set, counts the notifier's passes while this
	// replica does not lead.
	followerPasses *atomic.Int64
}

// runServer runs a Signet server whose Notifier "k8sbundle" writes
// through r.kc into r.ns; it returns the server and its admin connection.
func runServer(t *testing.T, r replica) (*server.Server, *grpc.ClientConn) {
	t.Helper()
	dir, err := os.MkdirTemp("", "k8sb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := server.Config{
		TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
		DataDir:     filepath.Join(dir, "data"),
		BindAddress: "127.0.0.1:0",
		AdminSocket: filepath.Join(dir, "api.sock"),
		Logger:      r.log,
		Registry:    r.reg,
		Notifiers: []server.NotifierFactory{{Name: "k8sbundle", New: func(h server.NotifierHost) (server.Notifier, error) {
			leader := h.Leader
			if r.followerPasses != nil {
				leader = func() bool {
					l := h.Leader()
					if !l {
						r.followerPasses.Add(1)
					}
					return l
				}
			}
			return k8sbundle.New(k8sbundle.Config{Client: r.kc, Namespace: r.ns, Bundle: h.X509Authorities, Leader: leader,
				Interval: 100 * time.Millisecond, RetryBase: 100 * time.Millisecond, RetryLimit: time.Second,
				Clock: h.Clock, Logger: h.Logger, Registry: h.Registry})
		}}},
	}
	if r.configure != nil {
		r.configure(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("server did not start: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("server did not start")
	}
	conn, err := grpc.NewClient("unix://"+srv.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return srv, conn
}

// configMapCerts returns the certificates under bundle.crt of
// ns/spire-bundle (nil while it is missing).
func configMapCerts(t *testing.T, kc kubernetes.Interface, ns string) ([]*x509.Certificate, *corev1.ConfigMap) {
	t.Helper()
	cm, err := kc.CoreV1().ConfigMaps(ns).Get(t.Context(), k8sbundle.DefaultConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var certs []*x509.Certificate
	rest := []byte(cm.Data[k8sbundle.DefaultConfigMapKey])
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("ConfigMap holds a bad certificate: %v", err)
		}
		certs = append(certs, c)
	}
	return certs, cm
}

func hasAuthority(certs []*x509.Certificate, id string) bool {
	for _, c := range certs {
		if ca.X509AuthorityID(c) == id {
			return true
		}
	}
	return false
}

func selfSigned(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// serviceAccountClient creates ns/name with a Role on configmaps of the
// given verbs and returns a client authenticating with its token.
func serviceAccountClient(t *testing.T, c *kubetest.Cluster, ns, name string, verbs []string) kubernetes.Interface {
	t.Helper()
	ctx := t.Context()
	c.CreateServiceAccount(t, ns, name)
	rbac := c.Client.RbacV1()
	if _, err := rbac.Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{k8sbundle.DefaultConfigMap}, Verbs: verbs}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ttl := int64(600)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(c.Config)
	cfg.BearerToken = tr.Status.Token
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestAgainstKubeAPIServer runs the notifier against a real kube-apiserver.
func TestAgainstKubeAPIServer(t *testing.T) {
	c := kubetest.Start(t)

	// A server creates the ConfigMap with its bundle; after a CA rotation
	// (prepare, then activate, through the LocalAuthority API) the
	// ConfigMap carries the new authority.
	t.Run("server publishes and follows a rotation", func(t *testing.T) {
		const ns = "spire"
		c.CreateNamespace(t, ns)
		reg := prometheus.NewRegistry()
		srv, conn := runServer(t, replica{kc: c.Client, ns: ns, reg: reg})
		first, _ := srv.CA().X509Authority()
		eventually(t, "ConfigMap with the server's authority", func() bool {
			certs, _ := configMapCerts(t, c.Client, ns)
			return hasAuthority(certs, ca.X509AuthorityID(first))
		})
		la := localauthorityv1.NewLocalAuthorityClient(conn)
		prep, err := la.PrepareX509Authority(t.Context(), &localauthorityv1.PrepareX509AuthorityRequest{})
		if err != nil {
			t.Fatal(err)
		}
		next := prep.PreparedAuthority.AuthorityId
		if next == ca.X509AuthorityID(first) {
			t.Fatal("prepare returned the active authority")
		}
		if _, err := la.ActivateX509Authority(t.Context(), &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: next}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "ConfigMap with the activated authority", func() bool {
			certs, _ := configMapCerts(t, c.Client, ns)
			return hasAuthority(certs, next) && k8sbundle.PEM(certs) == k8sbundle.PEM(srv.CA().Bundle().X509Authorities())
		})
		if active, _ := srv.CA().X509Authority(); ca.X509AuthorityID(active) != next {
			t.Fatalf("active authority %s, want %s", ca.X509AuthorityID(active), next)
		}
		if got := updates(t, reg, "created"); got != 1 {
			t.Errorf("created %v times, want 1", got)
		}
		if got := updates(t, reg, "updated"); got < 1 {
			t.Errorf("updated %v times, want at least 1", got)
		}
	})

	// A ConfigMap that exists with other keys, labels and a stale bundle
	// keeps them; only the bundle key changes.
	t.Run("existing ConfigMap keeps its other keys", func(t *testing.T) {
		const ns = "keep"
		c.CreateNamespace(t, ns)
		if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: k8sbundle.DefaultConfigMap, Labels: map[string]string{"team": "a"}},
			Data:       map[string]string{"other": "kept", k8sbundle.DefaultConfigMapKey: "stale"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cert := selfSigned(t, "root")
		n, err := k8sbundle.New(k8sbundle.Config{Client: c.Client, Namespace: ns, Bundle: func() []*x509.Certificate { return []*x509.Certificate{cert} }})
		if err != nil {
			t.Fatal(err)
		}
		res, err := n.Sync(t.Context(), k8sbundle.PEM([]*x509.Certificate{cert}))
		if err != nil || res != "updated" {
			t.Fatalf("Sync: %q, %v; want updated", res, err)
		}
		certs, cm := configMapCerts(t, c.Client, ns)
		if len(certs) != 1 || !certs[0].Equal(cert) || cm.Data["other"] != "kept" || cm.Labels["team"] != "a" {
			t.Fatalf("ConfigMap after Sync: %v", cm)
		}
		if res, err := n.Sync(t.Context(), k8sbundle.PEM([]*x509.Certificate{cert})); err != nil || res != "" {
			t.Fatalf("second Sync: %q, %v; want no write", res, err)
		}
	})

	// Only the leader writes: while Leader is false the ConfigMap is not
	// created, however often the bundle changes; once it leads, it is.
	t.Run("only the leader writes", func(t *testing.T) {
		const ns = "leader"
		c.CreateNamespace(t, ns)
		var leading atomic.Bool
		asked := make(chan bool, 100)
		cert := selfSigned(t, "root")
		n, err := k8sbundle.New(k8sbundle.Config{Client: c.Client, Namespace: ns, Interval: 20 * time.Millisecond,
			Bundle: func() []*x509.Certificate { return []*x509.Certificate{cert} },
			Leader: func() bool {
				l := leading.Load()
				select {
				case asked <- l:
				default:
				}
				return l
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { n.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		n.BundleChanged()
		for range 3 { // three passes that were not leading
			select {
			case <-asked:
			case <-time.After(time.Minute):
				t.Fatal("the notifier never asked whether it leads")
			}
		}
		if certs, cm := configMapCerts(t, c.Client, ns); cm != nil {
			t.Fatalf("a follower wrote the ConfigMap (%d certificates)", len(certs))
		}
		leading.Store(true)
		eventually(t, "ConfigMap written by the new leader", func() bool {
			certs, _ := configMapCerts(t, c.Client, ns)
			return len(certs) == 1 && certs[0].Equal(cert)
		})
	})

	// Two replicas on one etcd share the CA: only the scheduler leader
	// writes the ConfigMap, at start and after a rotation made through the
	// other replica; the follower runs its passes and writes nothing.
	t.Run("HA: only the leader writes", func(t *testing.T) {
		const ns = "ha"
		c.CreateNamespace(t, ns)
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		dir, err := os.MkdirTemp("", "k8sha")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		members, err := etcdserver.StartCluster(ctx, filepath.Join(dir, "etcd"), 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { members[0].Close() })
		kek := filepath.Join(dir, "kek")
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(kek, key, 0o600); err != nil {
			t.Fatal(err)
		}
		type running struct {
			srv      *server.Server
			conn     *grpc.ClientConn
			reg      *prometheus.Registry
			passes   *atomic.Int64
			requests *atomic.Int64 // API requests of its notifier
		}
		var rs []running
		for range 2 {
			r := running{reg: prometheus.NewRegistry(), passes: new(atomic.Int64), requests: new(atomic.Int64)}
			rc := rest.CopyConfig(c.Config)
			rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
				return roundTripFunc(func(req *http.Request) (*http.Response, error) {
					r.requests.Add(1)
					return rt.RoundTrip(req)
				})
			}
			kc, err := kubernetes.NewForConfig(rc)
			if err != nil {
				t.Fatal(err)
			}
			r.srv, r.conn = runServer(t, replica{kc: kc, ns: ns, reg: r.reg, followerPasses: r.passes, configure: func(cfg *server.Config) {
				tls := members[0].TLS()
				cfg.Etcd = server.EtcdConfig{Endpoints: members[0].Endpoints(), CertFile: tls.CertFile, KeyFile: tls.KeyFile, CAFile: tls.CAFile}
				cfg.CAKEKFile = kek
			}})
			rs = append(rs, r)
		}
		var leader, follower running
		eventually(t, "one scheduler leader", func() bool {
			a, b := rs[0].srv.SchedulerLeader(), rs[1].srv.SchedulerLeader()
			switch {
			case a && !b:
				leader, follower = rs[0], rs[1]
			case b && !a:
				leader, follower = rs[1], rs[0]
			}
			return a != b
		})
		first, _ := leader.srv.CA().X509Authority()
		eventually(t, "ConfigMap with the shared authority", func() bool {
			certs, _ := configMapCerts(t, c.Client, ns)
			return hasAuthority(certs, ca.X509AuthorityID(first))
		})
		prep, err := localauthorityv1.NewLocalAuthorityClient(follower.conn).PrepareX509Authority(t.Context(), &localauthorityv1.PrepareX509AuthorityRequest{})
		if err != nil {
			t.Fatal(err)
		}
		next := prep.PreparedAuthority.AuthorityId
		eventually(t, "ConfigMap with the authority prepared on the follower", func() bool {
			certs, _ := configMapCerts(t, c.Client, ns)
			return hasAuthority(certs, next)
		})
		eventually(t, "the follower's CA reloaded", func() bool {
			return hasAuthority(follower.srv.CA().Bundle().X509Authorities(), next)
		})
		seen := follower.passes.Load()
		eventually(t, "two more passes of the follower", func() bool { return follower.passes.Load() >= seen+2 })
		if !leader.srv.SchedulerLeader() || follower.srv.SchedulerLeader() {
			t.Fatal("scheduler leadership moved during the test")
		}
		if n := follower.requests.Load(); n != 0 {
			t.Errorf("the follower's notifier made %d API requests, want none", n)
		}
		if w := updates(t, leader.reg, "created") + updates(t, leader.reg, "updated"); w < 2 {
			t.Errorf("the leader wrote %v times, want the creation and the rotation", w)
		}
	})

	// With a service account that may get and create but not update the
	// ConfigMap, the failure is logged and counted and retried, and the
	// server keeps serving.
	t.Run("forbidden update is visible and the server serves", func(t *testing.T) {
		const ns = "rbac"
		c.CreateNamespace(t, ns)
		if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: k8sbundle.DefaultConfigMap},
			Data:       map[string]string{k8sbundle.DefaultConfigMapKey: "stale"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		kc := serviceAccountClient(t, c, ns, "signet-server", []string{"get", "create"})
		reg := prometheus.NewRegistry()
		var logs syncBuffer
		_, conn := runServer(t, replica{kc: kc, ns: ns, reg: reg, log: slog.New(slog.NewTextHandler(&logs, nil))})
		eventually(t, "two failed attempts counted", func() bool {
			return updates(t, reg, "failure") >= 2
		})
		if l := logs.String(); !strings.Contains(l, "failed to write the bundle ConfigMap") || !strings.Contains(l, "forbidden") {
			t.Errorf("no error log naming the refusal:\n%s", l)
		}
		if _, cm := configMapCerts(t, c.Client, ns); cm.Data[k8sbundle.DefaultConfigMapKey] != "stale" {
			t.Fatalf("the ConfigMap changed without update rights: %v", cm.Data)
		}
		b, err := bundlev1.NewBundleClient(conn).GetBundle(t.Context(), &bundlev1.GetBundleRequest{})
		if err != nil || len(b.X509Authorities) == 0 {
			t.Fatalf("server does not serve its bundle: %v %v", b, err)
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// updates is signet_k8sbundle_updates_total{result} in reg (0 if absent).
func updates(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "signet_k8sbundle_updates_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
