package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attest/docker"
	"github.com/signet-id/signet/attest/unix"
	"github.com/signet-id/signet/conformance/podmantest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// TestDockerWorkloadEndToEnd: a workload in a real container (rootful
// podman) fetches its SVID over the agent's socket mounted into the
// container; the agent attests it with the docker attestor through
// podman's Engine API, and the entry selects it by a container label.
// A container without the label gets no identity.
func TestDockerWorkloadEndToEnd(t *testing.T) {
	pm := podmantest.Start(t)
	dir := shortDir(t)
	srv := startServer(t, dir)
	token := srv.token(t, 600)
	web := spiffeid.RequireFromPath(td, "/container/web")
	srv.createEntry(t, web, agentIDFor(token), &types.Selector{Type: docker.SelectorType, Value: "label:signet.test/app:web"})
	dockerAttestor, err := docker.New(docker.Config{SocketPath: pm.Socket})
	if err != nil {
		t.Fatal(err)
	}
	ag := startAgent(t, srv, dir, token, func(c *agent.Config) {
		c.Attestor = agent.Attestors{
			{Type: unix.SelectorType, Attestor: unix.New()},
			{Type: docker.SelectorType, Attestor: dockerAttestor},
		}
	})

	const image = "localhost/signet-dockerworkload:test"
	pm.Import(image, pm.BuildFetchSVID())
	sockDir := filepath.Dir(ag.socket)
	run := func(labels ...string) string {
		t.Helper()
		opts := []string{"--volume", sockDir + ":/run/signet"}
		for _, l := range labels {
			opts = append(opts, "--label", l)
		}
		return pm.RunOnce(image, append(opts, "--entrypoint", `["/app", "/run/signet/`+filepath.Base(ag.socket)+`"]`)...)
	}
	if out := run("signet.test/app=web"); out != "spiffe-id: "+web.String() {
		t.Fatalf("labelled container: %q, want its SVID %s", out, web)
	}
	if out := run("signet.test/app=db"); !strings.HasPrefix(out, "error:") || !strings.Contains(out, "PermissionDenied") {
		t.Fatalf("container without the entry's label: %q, want PermissionDenied", out)
	}
}
