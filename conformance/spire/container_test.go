package spire

import (
	"testing"
	"time"

	"github.com/signet-id/signet/conformance/podmantest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// fetchSVIDImage imports the podmantest fetchsvid workload as an image.
func fetchSVIDImage(pm *podmantest.Podman, name string) string {
	pm.Import(name, pm.BuildFetchSVID())
	return name
}

// containerArgs are the podman run options that mount agentDir, where
// spire-agent will put agent.sock, and make the container's fetchsvid
// workload wait for it.
func containerArgs(agentDir string) []string {
	return []string{"--volume", agentDir + ":/run/spire", "--entrypoint", `["/app", "/run/spire/agent.sock", "90"]`}
}

// spireAgentServesContainer starts a Signet server with an entry for id
// selected by exactly sel, and a spire-agent (config template tmpl, its
// Workload API socket in agentDir) attested to it; the container
// (started with containerArgs) must then get that entry's SVID.
func spireAgentServesContainer(t *testing.T, pm *podmantest.Podman, containerID, agentDir string, id spiffeid.ID, sel []*types.Selector, tmpl string, extra map[string]any) {
	t.Helper()
	bins := spireBinaries(t)
	srv := startSignet(t, signetOptions{now: time.Now})
	token := srv.token(t)
	agentID := spiffeid.RequireFromSegments(td, "spire", "agent", "join_token", token)
	srv.createEntry(t, &types.Entry{SpiffeId: protoID(id), ParentId: protoID(agentID), Selectors: sel})
	extra["JoinToken"] = token
	startSPIREAgent(t, bins.agent, srv, agentDir, tmpl, extra)
	pm.Run("wait", containerID)
	if out := pm.Run("logs", containerID); out != "spiffe-id: "+id.String() {
		t.Fatalf("the container's workload got %q, want the SVID %s (entry selected by Signet's selectors %v)", out, id, sel)
	}
}
