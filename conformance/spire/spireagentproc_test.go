package spire

import (
	"maps"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// startSPIREAgent renders the spire-agent config template tmpl into dir
// (the Signet server's address, bundle and trust domain, the data dir and
// socket, plus extra for the node attestor), starts spire-agent and waits
// for its Workload API socket, whose path it returns.
func startSPIREAgent(t *testing.T, bin string, srv *signetServer, dir, tmpl string, extra map[string]any) string {
	t.Helper()
	return startSPIREAgentAt(t, bin, srv.AgentAddr().String(), srv.bundlePEM(t), td.Name(), dir, tmpl, extra)
}

// startSPIREAgentAt starts spire-agent against the server at addr, of
// trust domain trustDomain, whose bundle is the PEM file bundlePath.
func startSPIREAgentAt(t *testing.T, bin, addr, bundlePath, trustDomain, dir, tmpl string, extra map[string]any) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	socket := filepath.Join(dir, "agent.sock")
	cfg := filepath.Join(dir, "agent.conf")
	data := map[string]any{
		"DataDir": filepath.Join(dir, "data"), "ServerHost": host, "ServerPort": port, "Socket": socket,
		"BundlePath": bundlePath, "TrustDomain": trustDomain,
	}
	maps.Copy(data, extra)
	renderConfig(t, tmpl, cfg, data)
	agent := startProc(t, "spire-agent", bin, "run", "-config", cfg)
	waitFor(t, 60*time.Second, "spire-agent Workload API socket", func() bool {
		if agent.exited() {
			t.Fatalf("spire-agent exited: %v", agent.err)
		}
		_, err := os.Stat(socket)
		return err == nil
	})
	return socket
}
