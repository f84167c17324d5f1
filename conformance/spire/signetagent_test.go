package spire

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/agent"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// counter reads a counter's value from a registry.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var v float64
			for _, m := range mf.Metric {
				v += m.GetCounter().GetValue()
			}
			return v
		}
	}
	return 0
}

// parsePEM parses every CERTIFICATE block.
func parsePEM(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal("no certificates in PEM")
	}
	return out
}

// TestSignetAgentToSPIREServer runs the Signet agent in-process against a
// real spire-server v1.13.3: join-token attestation, entries created with
// the spire-server CLI, SVIDs served to go-spiffe, and an entry change
// picked up by polling because SPIRE has no signet.notify.v1 push stream.
func TestSignetAgentToSPIREServer(t *testing.T) {
	bins := spireBinaries(t)
	ss := startSPIREServer(t, bins)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	out, err := cli(ctx, ss.bin, ss.socket, "token", "generate", "-ttl", "600", "-output", "json")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Value string }
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Value == "" {
		t.Fatalf("token generate output %q: %v", out, err)
	}
	agentID := spiffeid.RequireFromSegments(td, "spire", "agent", "join_token", tok.Value)
	me := spiffeid.RequireFromPath(td, "/workload/signet-agent")
	out, err = cli(ctx, ss.bin, ss.socket, "entry", "create", "-output", "json",
		"-parentID", agentID.String(), "-spiffeID", me.String(), "-selector", "unix:uid:"+strconv.Itoa(os.Getuid()))
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		Results []struct {
			Entry struct{ ID string }
		}
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || len(created.Results) != 1 || created.Results[0].Entry.ID == "" {
		t.Fatalf("entry create output %q: %v", out, err)
	}
	entryID := created.Results[0].Entry.ID
	bundlePEM, err := cli(ctx, ss.bin, ss.socket, "bundle", "show")
	if err != nil {
		t.Fatal(err)
	}

	dir := shortDir(t)
	logs := &logBuffer{}
	dumpOnFailure(t, "signet agent", logs)
	reg := prometheus.NewRegistry()
	a, err := agent.New(agent.Config{
		TrustDomain:     td,
		ServerAddresses: []string{ss.addr},
		JoinToken:       tok.Value,
		DataDir:         filepath.Join(dir, "agent"),
		SocketPath:      filepath.Join(dir, "wl.sock"),
		TrustBundle:     parsePEM(t, []byte(bundlePEM)),
		Logger:          slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry:        reg,
		SyncInterval:    time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	t.Cleanup(func() { acancel(); <-done })
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("signet agent: %v", err)
	}

	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+filepath.Join(dir, "wl.sock"))))
	if err != nil {
		t.Fatalf("NewX509Source on the Signet agent: %v", err)
	}
	defer src.Close()

	t.Run("attest and serve SVID", func(t *testing.T) {
		svid, err := src.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		if svid.ID != me {
			t.Fatalf("SVID ID %v, want %v", svid.ID, me)
		}
		if a.AgentID() != agentID {
			t.Fatalf("agent ID %v, want %v", a.AgentID(), agentID)
		}
		b, err := src.GetX509BundleForTrustDomain(td)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := x509svid.Verify(svid.Certificates, b); err != nil {
			t.Fatalf("chain does not verify against the workload bundle: %v", err)
		}
		// spire-server knows the agent, attested by join token.
		out, err := cli(ctx, ss.bin, ss.socket, "agent", "show", "-spiffeID", agentID.String(), "-output", "json")
		if err != nil {
			t.Fatal(err)
		}
		var shown struct {
			AttestationType string `json:"attestation_type"`
		}
		if err := json.Unmarshal([]byte(out), &shown); err != nil || shown.AttestationType != "join_token" {
			t.Fatalf("agent show: %q %v", out, err)
		}
	})

	t.Run("JWT-SVID minted and validated", func(t *testing.T) {
		checkJWT(t, ctx, filepath.Join(dir, "wl.sock"), me)
	})

	t.Run("entry update reaches workload by polling", func(t *testing.T) {
		before, err := src.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli(ctx, ss.bin, ss.socket, "entry", "update", "-entryID", entryID,
			"-parentID", agentID.String(), "-spiffeID", me.String(), "-selector", "unix:uid:"+strconv.Itoa(os.Getuid()),
			"-dns", "signet.example.org"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "re-issued SVID with the new DNS name", func() bool {
			s, err := src.GetX509SVID()
			if err != nil || s.Certificates[0].SerialNumber.Cmp(before.Certificates[0].SerialNumber) == 0 {
				return false
			}
			return len(s.Certificates[0].DNSNames) == 1 && s.Certificates[0].DNSNames[0] == "signet.example.org"
		})
		// SPIRE has no push stream: the agent must keep its session and
		// poll, not end the session on the Unimplemented Watch.
		if n := counter(t, reg, "signet_agent_server_reconnects_total"); n != 0 {
			t.Fatalf("agent reconnected %v times; a missing push stream must not end the session", n)
		}
		if n := counter(t, reg, "signet_agent_attestations_total"); n != 1 {
			t.Fatalf("agent attested %v times, want 1", n)
		}
	})
}
