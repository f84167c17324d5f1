package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/keyspace"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestExternalEtcdNeedsClientCertificates: plaintext endpoints and
// missing client certificates are refused with a message naming the fix;
// --etcd-insecure lets them through with a WARN at start.
func TestExternalEtcdNeedsClientCertificates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "sgst")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	etcd, err := etcdserver.Start(ctx, etcdserver.Config{Dir: filepath.Join(dir, "etcd")})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	kek := filepath.Join(dir, "kek")
	if err := os.WriteFile(kek, bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString("example.org")
	for _, tc := range []struct {
		name string
		etcd EtcdConfig
		ok   bool
	}{
		{"http endpoint", EtcdConfig{Endpoints: []string{"http://127.0.0.1:2379"}, CertFile: kek, KeyFile: kek}, false},
		{"https without a client certificate", EtcdConfig{Endpoints: []string{"https://127.0.0.1:2379"}}, false},
		{"unix socket without a client certificate", EtcdConfig{Endpoints: etcd.Endpoints()}, false},
		{"insecure accepted", EtcdConfig{Endpoints: etcd.Endpoints(), Insecure: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			rdir := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			srv, err := New(Config{TrustDomain: td, DataDir: rdir, BindAddress: "127.0.0.1:0", Etcd: tc.etcd, CAKEKFile: kek,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			if err != nil {
				t.Fatal(err)
			}
			rctx, rcancel := context.WithCancel(ctx)
			defer rcancel()
			done := make(chan error, 1)
			go func() { done <- srv.Run(rctx) }()
			select {
			case err := <-done:
				if tc.ok {
					t.Fatalf("refused: %v", err)
				}
				if !errors.Is(err, ErrInsecureEtcd) || !strings.Contains(err.Error(), "--etcd-insecure") || !strings.Contains(err.Error(), "--etcd-cert") {
					t.Fatalf("error %v does not say what to do", err)
				}
				t.Logf("refused: %v", err)
			case <-srv.Ready():
				if !tc.ok {
					t.Fatal("server started on an insecure etcd")
				}
				if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "INSECURE external etcd") {
					t.Errorf("no WARN at start:\n%s", logs.String())
				}
				rcancel()
				<-done
			}
		})
	}
}

// TestRetentionArchivesBeyondThePolicy appends records past the policy
// and runs retention passes: records move to 0600 archive files, etcd
// keeps the policy's count, every archived record was covered by a
// signed checkpoint, and archive plus rest verify as one chain.
func TestRetentionArchivesBeyondThePolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	etcd, err := etcdserver.Start(ctx, etcdserver.Config{Dir: filepath.Join(dir, "etcd")})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	l, err := eventlog.New(etcd.Client(), keyspace.For(spiffeid.RequireTrustDomainFromString("example.org")).Events())
	if err != nil {
		t.Fatal(err)
	}
	root, key, chain := testCheckpointKey(t)
	cp := eventlog.NewCheckpointer(l, eventlog.StaticKey(key, chain))
	s := &Server{cfg: Config{Clock: clock.Real()}, log: slog.New(slog.DiscardHandler), evlog: l}
	r := &retainer{s: s, cp: cp, keys: eventlog.StaticKey(key, chain), policy: StateConfig{EventLogKeepRecords: 40}.policy(), dir: filepath.Join(dir, "archive"),
		archived: prometheus.NewCounter(prometheus.CounterOpts{Name: "a"}), failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "f"})}
	for i := range 150 {
		if i == 70 {
			if _, _, err := cp.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.Append(ctx, eventlog.Event{Kind: eventlog.KindSVIDIssued, Subject: "spiffe://example.org/w", Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	var total uint64
	for range 5 {
		n, err := r.pass(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		total += n
	}
	st, err := l.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kept := st.Seq - st.ArchivedSeq; kept > 40+2 { // + the anchors of the passes
		t.Errorf("etcd keeps %d records, policy 40", kept)
	}
	files, _ := filepath.Glob(filepath.Join(r.dir, "*.jsonl"))
	if len(files) < 2 || total == 0 {
		t.Fatalf("archived %d records into %v", total, files)
	}
	// The first pass cut at the checkpoint (seq 71); the second one signed
	// a new checkpoint before archiving up to its cut.
	var chainFiles []*os.File
	for _, f := range files {
		fi, _ := os.Stat(f)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, fi.Mode().Perm())
		}
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		chainFiles = append(chainFiles, fh)
	}
	var rest bytes.Buffer
	if _, err := l.ExportSigned(ctx, &rest, 0, 0, eventlog.StaticKey(key, chain)); err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	for _, f := range chainFiles {
		b, _ := os.ReadFile(f.Name())
		all.Write(b)
	}
	all.Write(rest.Bytes())
	rep, err := eventlog.Verify(&all, []*x509.Certificate{root}, eventlog.VerifyOptions{})
	if err != nil {
		t.Fatalf("archives + rest do not verify: %v", err)
	}
	t.Logf("archived %d records into %d files; etcd keeps seqs %d..%d; verify: %+v", total, len(files), st.ArchivedSeq+1, st.Seq, rep)
}

func testCheckpointKey(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey, []*x509.Certificate) {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{{Scheme: "spiffe", Host: "example.org"}}}
	der, err := x509.CreateCertificate(rand.Reader, rt, rt, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lt := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		URIs: []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: "/spire/server"}}}
	der, err = x509.CreateCertificate(rand.Reader, lt, root, key.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return root, key, []*x509.Certificate{leaf}
}
