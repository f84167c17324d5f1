package k8s

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/k8s/k8stest"
	"github.com/signet-id/signet/conformance/kubetest"
	"github.com/signet-id/signet/internal/container/containertest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPodsOfARealAPIServer: the pods come from a real kube-apiserver
// (conformance/kubetest), created there with an owner and their
// container statuses written as a kubelet writes them; the kubelet
// stand-in serves what the API server lists for its node, encoded by
// client-go's types, so the attestor reads the PodList a kubelet would.
func TestPodsOfARealAPIServer(t *testing.T) {
	c := kubetest.Start(t)
	c.CreateNamespace(t, "prod")
	c.CreateServiceAccount(t, "prod", "web")
	c.CreateNode(t, "node-1", nil, "10.0.0.11")
	pod := c.CreatePod(t, kubetest.PodSpec{
		Namespace: "prod", Name: "web-0", ServiceAccount: "web", Node: "node-1",
		Labels: map[string]string{"app": "web"}, HostIP: "10.0.0.11",
		Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1.2"}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pods := c.Client.CoreV1().Pods("prod")
	pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"}}
	pod, err := pods.Update(ctx, pod, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	digest := "registry.example/web@sha256:" + strings.Repeat("4", 64)
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "web", Image: "registry.example/web:1.2", ImageID: digest, Ready: true,
		ContainerID: "containerd://" + webContainer,
		State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
	}}
	if pod, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	k := k8stest.New(t, nil)
	k.SetLists(func(int) []byte {
		list, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-1"})
		if err != nil {
			t.Errorf("list pods: %v", err)
			return nil
		}
		list.Kind, list.APIVersion = "PodList", "v1"
		b, err := json.Marshal(list)
		if err != nil {
			t.Errorf("encode pods: %v", err)
		}
		return b
	})
	uid := string(pod.UID)
	cgroup := "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + strings.ReplaceAll(uid, "-", "_") +
		".slice/cri-containerd-" + webContainer + ".scope\n"
	got, err := attest(t, Config{
		SecurePort: k.Port(t), KubeletCAPath: k.CAFile(t), TokenPath: k8stest.TokenFile(t, k.Token),
		ProcRoot: containertest.ProcRoot(t, workloadPID, cgroup), MaxPollAttempts: 1,
	})
	want := []string{"sa:web", "ns:prod", "node-name:node-1", "pod-uid:" + uid, "pod-name:web-0",
		"pod-image-count:1", "pod-init-image-count:0", "pod-image:registry.example/web:1.2", "pod-image:" + digest,
		"pod-label:app:web", "pod-owner:StatefulSet:web", "pod-owner-uid:StatefulSet:0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
		"container-name:web", "container-image:registry.example/web:1.2", "container-image:" + digest}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Attest = %q, %v\nwant %q", got, err, want)
	}
}
