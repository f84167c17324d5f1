package controller_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/conformance/kubetest"
	"github.com/signet-id/signet/k8s/controller"
	"github.com/signet-id/signet/server"
	agentapi "github.com/signet-id/signet/server/api/agent"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

const cluster = "prod"

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// env is a real kube-apiserver with the CRDs installed and a real Signet
// server whose admin socket the controller talks to.
type env struct {
	k    *kubetest.Cluster
	dyn  dynamic.Interface
	srv  *server.Server
	conn *grpc.ClientConn
	ent  entryv1.EntryClient
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("SIGNET_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{k: kubetest.Start(t)}
	var err error
	if e.dyn, err = dynamicFor(e.k); err != nil {
		t.Fatal(err)
	}
	installCRDs(t, e.dyn)
	startServer(t, e, nil)
	return e
}

func dynamicFor(k *kubetest.Cluster) (dynamic.Interface, error) {
	return dynamic.NewForConfig(k.Config)
}

// shortDir is a temporary directory with a short path (Unix sockets).
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sgk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startServer runs a Signet server for e, with node attestors besides
// join tokens.
func startServer(t testing.TB, e *env, attestors []agentapi.NodeAttestor) {
	t.Helper()
	dir := shortDir(t)
	var err error
	e.srv, err = server.New(server.Config{
		TrustDomain:   td,
		DataDir:       filepath.Join(dir, "server"),
		BindAddress:   "127.0.0.1:0",
		AdminSocket:   filepath.Join(dir, "admin.sock"),
		Logger:        testLogger(t).With("component", "server"),
		NodeAttestors: attestors,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-e.srv.Ready():
	case err := <-done:
		t.Fatalf("server: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("server did not start")
	}
	if e.conn, err = grpc.NewClient("unix://"+e.srv.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.conn.Close() })
	e.ent = entryv1.NewEntryClient(e.conn)
}

// installCRDs creates the CRDs of deploy/kubernetes/crds, as listed by
// its kustomization, and waits until the API server serves them.
func installCRDs(t testing.TB, dyn dynamic.Interface) {
	t.Helper()
	dir := filepath.Join("..", "..", "deploy", "kubernetes", "crds")
	var kz struct {
		Resources []string `json:"resources"`
	}
	readYAML(t, filepath.Join(dir, "kustomization.yaml"), &kz)
	if len(kz.Resources) != 3 {
		t.Fatalf("kustomization lists %q, want the 3 CRDs", kz.Resources)
	}
	ctx := ctxT(t)
	for _, f := range kz.Resources {
		var obj map[string]any
		readYAML(t, filepath.Join(dir, f), &obj)
		u := &unstructured.Unstructured{Object: obj}
		if _, err := dyn.Resource(crdResource).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD %s: %v", f, err)
		}
		eventually(t, "CRD "+u.GetName()+" established", func() bool {
			got, err := dyn.Resource(crdResource).Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil {
				return false
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true
				}
			}
			return false
		})
	}
}

func readYAML(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// eventually polls cond for up to 60 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for range 1200 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// runningController is a controller run for the test.
type runningController struct {
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func (e *env) start(t testing.TB, mod func(*controller.Config)) *runningController {
	t.Helper()
	rc := &runningController{reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	cfg := controller.Config{
		TrustDomain: td, ClusterName: cluster, WatchClassless: true, Resync: time.Second,
		Kube: e.k.Client, Dynamic: e.dyn, Entries: e.ent, TrustDomains: trustdomainv1.NewTrustDomainClient(e.conn),
		Logger: testLogger(t).With("component", "controller"), Registry: rc.reg,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := controller.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ctx context.Context
	ctx, rc.cancel = context.WithCancel(context.Background())
	go func() { rc.done <- c.Run(ctx) }()
	t.Cleanup(rc.stop)
	return rc
}

func (rc *runningController) stop() {
	if rc.cancel == nil {
		return
	}
	rc.cancel()
	<-rc.done
	rc.cancel = nil
}

// passes is the number of reconciliation passes of result ("ok", "error").
func (rc *runningController) passes(t testing.TB, result string) int {
	t.Helper()
	n := 0.0
	mfs, err := rc.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "signet_k8s_controller_reconciles_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return int(n)
}

// writes is the number of entry writes of op.
func (rc *runningController) writes(t testing.TB, op string) int {
	t.Helper()
	mfs, err := rc.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "signet_k8s_controller_entry_writes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == op {
				return int(m.GetCounter().GetValue())
			}
		}
	}
	return 0
}

// entries lists the server's entries.
func (e *env) entries(t testing.TB) []*types.Entry {
	t.Helper()
	resp, err := e.ent.ListEntries(ctxT(t), &entryv1.ListEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Entries
}

// entryFor returns the entry with SPIFFE ID id, or nil.
func (e *env) entriesFor(t testing.TB, id string) []*types.Entry {
	var out []*types.Entry
	for _, en := range e.entries(t) {
		if "spiffe://"+en.SpiffeId.TrustDomain+en.SpiffeId.Path == id {
			out = append(out, en)
		}
	}
	return out
}

func selectorStrings(sels []*types.Selector) []string {
	var out []string
	for _, s := range sels {
		out = append(out, s.Type+":"+s.Value)
	}
	return out
}

// apply creates a custom resource from YAML.
func (e *env) apply(t testing.TB, gvr schema.GroupVersionResource, doc string) *unstructured.Unstructured {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(strings.TrimSpace(doc)), &obj); err != nil {
		t.Fatal(err)
	}
	u, err := e.dyn.Resource(gvr).Create(ctxT(t), &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %s: %v", gvr.Resource, err)
	}
	return u
}

// createErr is apply's error.
func createErr(t testing.TB, e *env, gvr schema.GroupVersionResource, doc string) error {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(strings.TrimSpace(doc)), &obj); err != nil {
		t.Fatal(err)
	}
	_, err := e.dyn.Resource(gvr).Create(ctxT(t), &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	return err
}

// status returns a custom resource's status.
func (e *env) status(t testing.TB, gvr schema.GroupVersionResource, name string) map[string]any {
	t.Helper()
	u, err := e.dyn.Resource(gvr).Get(ctxT(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, _, _ := unstructured.NestedMap(u.Object, "status")
	return st
}
