package spire

import (
	"context"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/k8s"
	"github.com/signet-id/signet/attest/k8s/k8stest"
	"github.com/signet-id/signet/conformance/podmantest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestSPIREAgentK8sSelectorsMatchSignets: a workload in a real container
// (rootful podman) in cgroups shaped as a pod's gets, from a real
// spire-agent v1.13.3 with its k8s WorkloadAttestor on the kubelet
// stand-in (HTTPS, token), the SVID of an entry selected only by the k8s
// selectors Signet's attestor gives for the same process: SPIRE locates
// the same pod and container and derives each selector from the same pod.
func TestSPIREAgentK8sSelectorsMatchSignets(t *testing.T) {
	pm := podmantest.Start(t)
	image := fetchSVIDImage(pm, "localhost/signet-fetchsvid:k8s-interop")
	const podUID = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
	agentDir := shortDir(t)
	id, pid := pm.RunContainer(image, append(containerArgs(agentDir), "--cgroup-parent", pm.PodCgroupParent(podUID))...)
	kubelet := k8stest.New(t, k8stest.PodListWith(podUID, id))
	caFile, tokenFile := kubelet.CAFile(t), k8stest.TokenFile(t, kubelet.Token)

	a, err := k8s.New(k8s.Config{SecurePort: kubelet.Port(t), KubeletCAPath: caFile, TokenPath: tokenFile, MaxPollAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sel, err := a.Attest(ctx, pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(sel) < 15 {
		t.Fatalf("Signet's selectors %v", sel)
	}
	spireAgentServesContainer(t, pm, id, agentDir, spiffeid.RequireFromPath(td, "/ns/prod/sa/web"), sel,
		"spire-agent-k8s.conf.tmpl", map[string]any{"KubeletPort": kubelet.Port(t), "KubeletCA": caFile, "TokenPath": tokenFile})
}
