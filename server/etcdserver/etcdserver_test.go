package etcdserver

import (
	"context"
	"testing"
	"time"
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
