package spire

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/docker"
	"github.com/signet-id/signet/internal/podmantest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// TestSPIREAgentDockerSelectorsMatchSignets: a workload in a real
// container (rootful podman) gets, from a real spire-agent v1.13.3 with
// its docker WorkloadAttestor on podman's Engine API, the SVID of an entry
// selected only by the docker selectors Signet's attestor gives for the
// same container (labels, every environment variable, image_id): SPIRE
// derives each of them from the same container.
func TestSPIREAgentDockerSelectorsMatchSignets(t *testing.T) {
	bins := spireBinaries(t)
	pm := podmantest.Start(t)
	const image = "localhost/signet-fetchsvid:interop"
	pm.Import(image, pm.BuildFetchSVID())
	agentDir := shortDir(t)
	id, pid := pm.RunContainer(image, "--volume", agentDir+":/run/spire",
		"--label", "app=web", "--label", "signet.test/tier=front", "--env", "GREETING=hello world",
		"--entrypoint", `["/app", "/run/spire/agent.sock", "90"]`)

	a, err := docker.New(docker.Config{SocketPath: pm.Socket})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sel, err := a.Attest(ctx, pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(sel) < 5 { // two labels, PATH, GREETING, image_id at least
		t.Fatalf("Signet's selectors %v", sel)
	}

	srv := startSignet(t, signetOptions{now: time.Now})
	token := srv.token(t)
	agentID := spiffeid.RequireFromSegments(td, "spire", "agent", "join_token", token)
	web := spiffeid.RequireFromPath(td, "/container/web")
	srv.createEntry(t, &types.Entry{SpiffeId: protoID(web), ParentId: protoID(agentID), Selectors: sel})
	socket := startSPIREAgent(t, bins.agent, srv, agentDir, "spire-agent-docker.conf.tmpl",
		map[string]any{"JoinToken": token, "DockerSocket": pm.Socket})
	if filepath.Base(socket) != "agent.sock" {
		t.Fatalf("spire-agent socket %s, the container expects agent.sock", socket)
	}
	pm.Run("wait", id)
	if out := pm.Run("logs", id); out != "spiffe-id: "+web.String() {
		t.Fatalf("the container's workload got %q, want the SVID %s (entry selected by Signet's docker selectors %v)", out, web, sel)
	}
}
