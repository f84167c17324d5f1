package spire

import (
	"context"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/docker"
	"github.com/signet-id/signet/conformance/podmantest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestSPIREAgentDockerSelectorsMatchSignets: a workload in a real
// container (rootful podman) gets, from a real spire-agent v1.13.3 with
// its docker WorkloadAttestor on podman's Engine API, the SVID of an entry
// selected only by the docker selectors Signet's attestor gives for the
// same container (labels, every environment variable, image_id): SPIRE
// derives each of them from the same container.
func TestSPIREAgentDockerSelectorsMatchSignets(t *testing.T) {
	pm := podmantest.Start(t)
	image := fetchSVIDImage(pm, "localhost/signet-fetchsvid:interop")
	agentDir := shortDir(t)
	id, pid := pm.RunContainer(image, append(containerArgs(agentDir),
		"--label", "app=web", "--label", "signet.test/tier=front", "--env", "GREETING=hello world")...)

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
	spireAgentServesContainer(t, pm, id, agentDir, spiffeid.RequireFromPath(td, "/container/web"), sel,
		"spire-agent-docker.conf.tmpl", map[string]any{"DockerSocket": pm.Socket})
}
