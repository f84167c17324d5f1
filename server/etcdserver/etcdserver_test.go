package etcdserver

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

func TestSingleMemberPutGet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	s, err := Start(ctx, Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	if len(s.Endpoints()) != 1 {
		t.Fatalf("endpoints = %v", s.Endpoints())
	}
	if _, err := s.Client().Put(ctx, "/k", "v"); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Client().Get(ctx, "/k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get /k = %v", resp.Kvs)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestRefusesPlaintextAndNonLoopback(t *testing.T) {
	certs, err := NewClusterTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"https://10.1.2.3:2379", "http://127.0.0.1:2379", "https://127.0.0.1", "https://example.com:2379", "unix:///tmp/x.sock"} {
		_, err := Start(context.Background(), Config{Dir: t.TempDir(), ClientURL: u, InitialCluster: "signet=https://127.0.0.1:2380", TLS: certs})
		if err == nil {
			t.Errorf("Start with client URL %q succeeded", u)
		}
	}
	// A single member takes no URLs, and a cluster member needs TLS.
	if _, err := Start(context.Background(), Config{Dir: t.TempDir(), ClientURL: "https://127.0.0.1:2379"}); err == nil {
		t.Error("single member with a client URL started")
	}
	if _, err := Start(context.Background(), Config{Dir: t.TempDir(), InitialCluster: "signet=https://127.0.0.1:2380"}); err == nil {
		t.Error("cluster member without TLS started")
	}
	if _, err := Start(context.Background(), Config{}); err == nil {
		t.Error("Start without a data dir succeeded")
	}
}

func TestClusterSurvivesOneMemberStopping(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	servers, err := StartCluster(ctx, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()

	if _, err := servers[0].Client().Put(ctx, "/before", "1"); err != nil {
		t.Fatal(err)
	}
	if err := servers[2].Close(); err != nil {
		t.Fatal(err)
	}
	// Writes still reach a quorum through either survivor.
	if _, err := servers[1].Client().Put(ctx, "/after", "2"); err != nil {
		t.Fatal(err)
	}
	for _, s := range servers[:2] {
		for key, want := range map[string]string{"/before": "1", "/after": "2"} {
			resp, err := s.Client().Get(ctx, key) // linearizable read
			if err != nil {
				t.Fatalf("%s: get %s: %v", s.Name(), key, err)
			}
			if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != want {
				t.Fatalf("%s: get %s = %v, want %q", s.Name(), key, resp.Kvs, want)
			}
		}
	}
}

// TestRestartKeepsDataAndPrivacy restarts a member on its data directory
// (after its mode was loosened): the data is still there and the
// directory and socket are private again.
func TestRestartKeepsDataAndPrivacy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "etcd")
	s, err := Start(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Put(ctx, "/k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err = Start(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := s.Client().Get(ctx, "/k")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get after restart: %v %v", resp, err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, ClientSocketName): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
}

// TestUpgradeFromTCPMember starts this package's Start on a data
// directory written by a member that listened on loopback TCP (as Signet
// did before): it comes up on its Unix socket with the data intact.
func TestUpgradeFromTCPMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "etcd")
	ports, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	cu, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(ports[0]))
	pu, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(ports[1]))
	ec := embed.NewConfig()
	ec.Name, ec.Dir, ec.LogLevel = "signet", dir, "error"
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	ec.InitialCluster = "signet=" + pu.String()
	old, err := embed.StartEtcd(ec)
	if err != nil {
		t.Fatal(err)
	}
	<-old.Server.ReadyNotify()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{cu.String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/k", "old"); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	old.Close()

	s, err := Start(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := s.Client().Get(ctx, "/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "old" {
		t.Fatalf("get after upgrade: %v %v", resp, err)
	}
	if !strings.HasPrefix(s.Endpoints()[0], "unix://") {
		t.Errorf("endpoints %v", s.Endpoints())
	}
}
