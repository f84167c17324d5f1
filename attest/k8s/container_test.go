package k8s

import (
	"context"
	"slices"
	"testing"

	"github.com/signet-id/signet/attest/k8s/k8stest"
	"github.com/signet-id/signet/conformance/podmantest"
	"github.com/signet-id/signet/internal/container/containertest"
)

// TestRealContainerInPodCgroups attests a process in a real container
// (rootful podman) placed in cgroups shaped as a kubelet's pod, reading
// the real /proc; the kubelet stand-in lists the pod with that container.
func TestRealContainerInPodCgroups(t *testing.T) {
	pm := podmantest.Start(t)
	const image = "localhost/signet-sleeper:k8s"
	pm.Import(image, pm.BuildSleeper())
	const podUID = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
	id, pid := pm.RunContainer(image, "--cgroup-parent", pm.PodCgroupParent(podUID))
	k := k8stest.New(t, k8stest.PodListWith(podUID, id))
	a, err := New(Config{SecurePort: k.Port(t), KubeletCAPath: k.CAFile(t), TokenPath: k8stest.TokenFile(t, k.Token), MaxPollAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	sel, err := a.Attest(context.Background(), pid)
	if err != nil {
		t.Fatal(err)
	}
	got := containertest.Values(t, SelectorType, sel)
	for _, want := range []string{"pod-uid:" + podUID, "container-name:web", "ns:prod", "sa:web"} {
		if !slices.Contains(got, want) {
			t.Errorf("selectors %q lack %q", got, want)
		}
	}
}
