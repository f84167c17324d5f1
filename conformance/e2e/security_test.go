package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func TestAdminSocketPermissions(t *testing.T) {
	dir := shortDir(t)
	srv := startServer(t, dir)
	fi, err := os.Stat(srv.AdminSocket())
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("admin socket mode %v, want 0600", perm)
	}
	di, err := os.Stat(filepath.Dir(filepath.Join(dir, "server", "ca", "ca.json")))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm&0o077 != 0 {
		t.Fatalf("CA key directory mode %v is readable by others", perm)
	}
	ki, err := os.Stat(filepath.Join(dir, "server", "ca", "ca.json"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := ki.Mode().Perm(); perm != 0o600 {
		t.Fatalf("CA key file mode %v, want 0600", perm)
	}
}

func TestAgentListenerRequiresPostQuantumKEX(t *testing.T) {
	dir := shortDir(t)
	srv := startServer(t, dir)
	roots := x509.NewCertPool()
	for _, c := range srv.CA().Bundle().X509Authorities() {
		roots.AddCert(c)
	}
	dial := func(curves []tls.CurveID, maxVersion uint16) (*tls.Conn, error) {
		return tls.Dial("tcp", srv.AgentAddr().String(), &tls.Config{
			RootCAs: roots, ServerName: "localhost", CurvePreferences: curves, MaxVersion: maxVersion,
			NextProtos: []string{"h2"},
		})
	}
	c, err := dial([]tls.CurveID{tls.X25519MLKEM768, tls.X25519}, 0)
	if err != nil {
		t.Fatalf("hybrid PQ client refused: %v", err)
	}
	st := c.ConnectionState()
	c.Close()
	if st.CurveID != tls.X25519MLKEM768 || st.Version != tls.VersionTLS13 {
		t.Fatalf("negotiated %v / %x, want X25519MLKEM768 / TLS 1.3", st.CurveID, st.Version)
	}
	if c, err := dial([]tls.CurveID{tls.X25519, tls.CurveP256}, 0); err == nil {
		c.Close()
		t.Fatal("classical-only key exchange was accepted")
	}
	if c, err := dial(nil, tls.VersionTLS12); err == nil {
		c.Close()
		t.Fatal("TLS 1.2 was accepted")
	}
}

func TestAgentRenewsAtHalfLife(t *testing.T) {
	dir := shortDir(t)
	srv := startServerWith(t, dir, func(c *serverOptions) { c.agentTTL = 4 * time.Second })
	token := srv.token(t, 600)
	me := spiffeid.RequireFromPath(td, "/short")
	e := srv.createEntry(t, me, agentIDFor(token), uidSelector(os.Getuid()))
	_ = e
	ag := startAgent(t, srv, dir, token)
	waitFor(t, 30*time.Second, "agent attested", func() bool { return !ag.AgentID().IsZero() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+ag.socket)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	agentSerial := func() string {
		a, err := srv.agentRecord(ctx, agentIDFor(token))
		if err != nil {
			return ""
		}
		return a.X509SvidSerialNumber
	}
	first := agentSerial()
	// Past the agent SVID's half-life the agent renews it, reconnects with
	// the new one, and keeps serving workloads.
	waitFor(t, 20*time.Second, "agent SVID renewal", func() bool { s := agentSerial(); return s != "" && s != first })
	if _, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+ag.socket)); err != nil {
		t.Fatalf("fetch after agent renewal: %v", err)
	}
	second, renewed := agentSerial(), time.Now()
	waitFor(t, 20*time.Second, "second agent SVID renewal", func() bool { s := agentSerial(); return s != second })
	// A 4s SVID is renewed about 2s after issuance, not continuously.
	if gap := time.Since(renewed); gap < time.Second {
		t.Fatalf("agent SVID renewed again after %v; renewal is not waiting for half-life", gap)
	}
}

func TestNegotiatedGroupIsExported(t *testing.T) {
	dir := shortDir(t)
	reg := prometheus.NewRegistry()
	srv := startServerWith(t, dir, func(o *serverOptions) { o.registry = reg })
	token := srv.token(t, 600)
	ag := startAgent(t, srv, dir, token)
	waitFor(t, 30*time.Second, "agent attested", func() bool { return !ag.AgentID().IsZero() })
	var pq, other float64
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "signet_server_tls_handshakes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "group" && l.GetValue() == "X25519MLKEM768" {
					pq += m.GetCounter().GetValue()
				} else if l.GetName() == "group" {
					other += m.GetCounter().GetValue()
				}
			}
		}
	}
	if pq == 0 || other != 0 {
		t.Fatalf("handshakes by group: X25519MLKEM768=%v other=%v; want only post-quantum ones", pq, other)
	}
}
