package k8s

import (
	"testing"

	"github.com/signet-id/signet/attest/k8s/k8stest"

	"github.com/signet-id/signet/internal/container"
)

// FuzzPodList feeds arbitrary kubelet /pods answers to the decoder and
// the matcher: no panic, and a match always names the container's pod.
func FuzzPodList(f *testing.F) {
	for _, b := range [][]byte{k8stest.PodList, k8stest.DuplicatePodList} {
		f.Add(b, webPod)
		f.Add(b, "")
	}
	f.Add([]byte(`{"items":[{"metadata":{"uid":"x"},"status":{"containerStatuses":[{"containerID":"%zz"}]}}]}`), "x")
	a, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte, podUID string) {
		pl, err := parsePodList(b)
		if err != nil {
			return
		}
		values, err := a.match(pl.Items, container.Info{PodUID: podUID, ContainerID: webContainer})
		if err != nil || values == nil {
			return
		}
		if podUID != "" && values[3] != "pod-uid:"+podUID {
			t.Fatalf("matched %q for pod %q", values[3], podUID)
		}
	})
}
