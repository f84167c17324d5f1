package etcdserver_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/etcdserver/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestOtherUIDCannotReachEmbeddedEtcd starts the embedded member as the
// server does (Dir = <data dir>/etcd), enumerates every listening socket
// this process owns from /proc, and has a uid 65534 process try to write
// and read an etcd key through each. The directories above the etcd
// directory are traversable (0755), so only the etcd directory's 0700
// and, in the second round, the socket's 0600 stand in the way. A root
// run of the same attacker is the control: it must reach the socket.
func TestOtherUIDCannotReachEmbeddedEtcd(t *testing.T) {
	etcdtest.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := etcdtest.TraversableDir(t)
	data := filepath.Join(base, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := etcdserver.Start(ctx, etcdserver.Config{Dir: filepath.Join(data, "etcd")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Client().Put(ctx, "/signet/secret", "v"); err != nil {
		t.Fatal(err)
	}
	targets := etcdtest.Listeners(t)
	var sawSocket bool
	for _, tg := range targets {
		if strings.HasSuffix(tg, etcdserver.ClientSocketName) {
			sawSocket = true
		}
		if strings.HasPrefix(tg, "http") {
			t.Errorf("the embedded member listens on TCP: %s", tg)
		}
	}
	if !sawSocket {
		t.Fatalf("client socket not among this process's listeners %v", targets)
	}

	// Control: the same attacker as root (the owner) reaches the socket.
	if out := etcdtest.RunAttacker(t, base, "TestHelperEtcdAttacker", targets, false); !strings.Contains(out, "REACHED unix://") {
		t.Fatalf("root control did not reach the client socket:\n%s", out)
	}
	for _, round := range []struct {
		name    string
		dirMode os.FileMode
	}{{"etcd dir 0700", 0o700}, {"etcd dir 0711, socket 0600", 0o711}} {
		if err := os.Chmod(filepath.Join(data, "etcd"), round.dirMode); err != nil {
			t.Fatal(err)
		}
		out := etcdtest.RunAttacker(t, base, "TestHelperEtcdAttacker", targets, true)
		t.Logf("%s: uid 65534 attacker:\n%s", round.name, out)
		if strings.Contains(out, "REACHED") || strings.Count(out, "BLOCKED") != len(targets) {
			t.Errorf("%s: uid 65534 reached etcd (or did not try every listener):\n%s", round.name, out)
		}
	}
	assertUntouched(ctx, t, s.Client())
}

// TestOtherUIDCannotReachClusterMembers does the same against a 3-member
// TLS cluster: its TCP listeners require a client certificate of the
// cluster CA, whose key is readable by root only.
func TestOtherUIDCannotReachClusterMembers(t *testing.T) {
	etcdtest.RequireRoot(t)
	if testing.Short() {
		t.Skip("starts a 3-member etcd cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := etcdtest.TraversableDir(t)
	servers, err := etcdserver.StartCluster(ctx, filepath.Join(base, "etcd"), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	if _, err := servers[0].Client().Put(ctx, "/signet/secret", "v"); err != nil {
		t.Fatal(err)
	}
	targets := etcdtest.Listeners(t)
	var tcp int
	for _, tg := range targets {
		if strings.HasPrefix(tg, "https://") {
			tcp++
		}
	}
	if tcp < 6 {
		t.Fatalf("found %d TCP listeners, want the 3 client and 3 peer ones: %v", tcp, targets)
	}
	out := etcdtest.RunAttacker(t, base, "TestHelperEtcdAttacker", targets, true)
	t.Logf("uid 65534 attacker:\n%s", out)
	if strings.Contains(out, "REACHED") || strings.Count(out, "BLOCKED") != len(targets) {
		t.Errorf("uid 65534 reached etcd (or did not try every listener):\n%s", out)
	}
	assertUntouched(ctx, t, servers[1].Client())
}

// TestHelperEtcdAttacker is the attacker process of the tests above.
func TestHelperEtcdAttacker(t *testing.T) {
	if !etcdtest.AttackFromEnv() {
		t.Skip("helper process only")
	}
}

func assertUntouched(ctx context.Context, t *testing.T, cli *clientv3.Client) {
	t.Helper()
	resp, err := cli.Get(ctx, "/signet/attacker")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) != "0" { // the root control run may write it
			t.Errorf("attacker wrote /signet/attacker = %q", kv.Value)
		}
	}
}
