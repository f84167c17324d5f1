package server_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/keyspace"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// runUntilReady starts a server on dataDir for trustDomain and stops it
// once ready; it returns Run's error when start-up fails.
func runUntilReady(t *testing.T, dataDir, trustDomain string) error {
	t.Helper()
	srv, err := server.New(server.Config{
		TrustDomain: spiffeid.RequireTrustDomainFromString(trustDomain),
		DataDir:     dataDir,
		BindAddress: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		return nil
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("server neither started nor failed within 60s")
	}
	return nil
}

// TestRestartWithAnotherTrustDomainRefused: a data dir written by a server
// of example.org is refused by a server configured with other.org, with an
// error naming both trust domains and the two ways out; the refusal holds
// when the data dir's record is gone (a data dir written before the record
// existed: the etcd keys give the trust domain away), and the old trust
// domain still starts on it.
func TestRestartWithAnotherTrustDomainRefused(t *testing.T) {
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	dataDir := filepath.Join(dir, "server")
	if err := runUntilReady(t, dataDir, "example.org"); err != nil {
		t.Fatalf("first start: %v", err)
	}
	rec, err := os.ReadFile(filepath.Join(dataDir, server.TrustDomainFile))
	if err != nil || strings.TrimSpace(string(rec)) != "example.org" {
		t.Fatalf("trust domain record = %q, %v; want example.org", rec, err)
	}

	check := func(t *testing.T, where string) {
		t.Helper()
		err := runUntilReady(t, dataDir, "other.org")
		if !errors.Is(err, keyspace.ErrTrustDomainMismatch) {
			t.Fatalf("start with other.org: %v; want ErrTrustDomainMismatch", err)
		}
		for _, want := range []string{where, `"example.org"`, `"other.org"`, `trust_domain = "example.org"`, "new data_dir"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
	}
	t.Run("record", func(t *testing.T) { check(t, "data directory "+dataDir) })
	if err := os.Remove(filepath.Join(dataDir, server.TrustDomainFile)); err != nil {
		t.Fatal(err)
	}
	t.Run("etcd keys", func(t *testing.T) { check(t, "etcd holds") })
	if _, err := os.Stat(filepath.Join(dataDir, server.TrustDomainFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused start wrote the record: %v", err)
	}
	if err := runUntilReady(t, dataDir, "example.org"); err != nil {
		t.Fatalf("restart with example.org: %v", err)
	}
}
