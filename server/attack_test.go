package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/server/etcdserver/etcdtest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestOtherUIDCannotReachServerState runs a real server (embedded etcd,
// agent listener, admin socket) as root, enumerates every listening
// socket of the process from /proc, and has a uid 65534 process try to
// write and read etcd keys through each one. The data directory and its
// parents are traversable (0755): what stops the attacker is the etcd
// directory (0700) and, once that is opened to 0711, the socket (0600).
// The root control run reaches etcd through the same enumeration.
func TestOtherUIDCannotReachServerState(t *testing.T) {
	etcdtest.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := etcdtest.TraversableDir(t)
	data := filepath.Join(base, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"), DataDir: data, BindAddress: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx) }()
	defer func() { rcancel(); <-done }()
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	targets := etcdtest.Listeners(t)
	var tcp, unix int
	for _, tg := range targets {
		if strings.HasPrefix(tg, "https://") {
			tcp++
		} else {
			unix++
		}
	}
	if tcp != 1 || unix != 2 {
		t.Errorf("listeners %v: want the agent port, the admin socket and the etcd socket only", targets)
	}
	if out := etcdtest.RunAttacker(t, base, "TestHelperServerEtcdAttacker", targets, false); !strings.Contains(out, "REACHED unix://"+filepath.Join(data, "etcd")) {
		t.Fatalf("root control did not reach etcd:\n%s", out)
	}
	for _, mode := range []os.FileMode{0o700, 0o711} {
		if err := os.Chmod(filepath.Join(data, "etcd"), mode); err != nil {
			t.Fatal(err)
		}
		out := etcdtest.RunAttacker(t, base, "TestHelperServerEtcdAttacker", targets, true)
		t.Logf("etcd dir %v: uid 65534 attacker:\n%s", mode, out)
		if strings.Contains(out, "REACHED") || strings.Count(out, "BLOCKED") != len(targets) {
			t.Errorf("etcd dir %v: uid 65534 reached etcd (or did not try every listener):\n%s", mode, out)
		}
	}
	resp, err := srv.etcd.Get(ctx, "/signet/attacker")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) != "0" { // the root control run writes "0"
			t.Errorf("attacker wrote /signet/attacker = %q", kv.Value)
		}
	}
}

// TestHelperServerEtcdAttacker is the attacker process.
func TestHelperServerEtcdAttacker(t *testing.T) {
	if !etcdtest.AttackFromEnv() {
		t.Skip("helper process only")
	}
}
