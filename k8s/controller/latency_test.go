package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attest/k8s"
	"github.com/signet-id/signet/attest/k8s/k8stest"
	"github.com/signet-id/signet/attest/k8spsat"
	"github.com/signet-id/signet/conformance/kubetest"
	"github.com/signet-id/signet/internal/container/containertest"
	"github.com/signet-id/signet/k8s/controller"
	agentapi "github.com/signet-id/signet/server/api/agent"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// latencyPods is how many pods TestPodToSVIDLatency creates, one after
// the other.
const latencyPods = 50

// TestPodToSVIDLatency measures the whole path on real parts: a pod
// created in a real kube-apiserver → the controller's entry in a real
// Signet server → an SVID at a go-spiffe workload watching the Workload
// API of a real Signet agent (attested by k8s_psat against that API
// server), the workload attested by the k8s workload attestor, whose
// kubelet stand-in lists the API server's pods for the node and whose
// proc root puts the workload in the pod's container. The workload starts
// watching as the pod's container starts (its status is written), as a
// real one would, so it may ask before the entry exists and then retries
// with go-spiffe's default backoff. It logs p50/p99 of pod → entry and
// pod → SVID; it asserts only that every pod gets its SVID.
func TestPodToSVIDLatency(t *testing.T) {
	k := kubetest.Start(t)
	e := &env{k: k}
	var err error
	e.dyn, err = dynamicFor(k)
	if err != nil {
		t.Fatal(err)
	}
	installCRDs(t, e.dyn)
	psat, err := k8spsat.NewAttestor(k8spsat.Config{TrustDomain: td, Clusters: map[string]k8spsat.ClusterConfig{
		cluster: {ServiceAccountAllowList: []string{"spire:spire-agent"}, REST: k.Config},
	}})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, e, []agentapi.NodeAttestor{psat})

	k.CreateNamespace(t, "spire")
	ag := k.NewAgent(t, kubetest.AgentSpec{Node: "node-0"})
	dir := shortDir(t)
	tokenPath := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenPath, []byte(ag.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	ev, err := k8spsat.NewEvidence(k8spsat.AgentConfig{Cluster: cluster, TokenPath: tokenPath})
	if err != nil {
		t.Fatal(err)
	}

	// The kubelet stand-in lists node-0's pods as the API server has them.
	kubelet := k8stest.New(t, nil)
	kubelet.SetLists(func(int) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		list, err := k.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-0"})
		if err != nil {
			t.Errorf("list pods: %v", err)
			return nil
		}
		list.Kind, list.APIVersion = "PodList", "v1"
		b, _ := json.Marshal(list)
		return b
	})
	pid := int32(os.Getpid())
	procRoot := containertest.ProcRoot(t, pid, "0::/\n")
	wla, err := k8s.New(k8s.Config{
		SecurePort: kubelet.Port(t), KubeletCAPath: kubelet.CAFile(t), TokenPath: k8stest.TokenFile(t, kubelet.Token),
		ProcRoot: procRoot, MaxPollAttempts: 600, PollRetryInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "wl.sock")
	a, err := agent.New(agent.Config{
		TrustDomain: td, ServerAddresses: []string{e.srv.AgentAddr().String()},
		NodeEvidence: ev, DataDir: filepath.Join(dir, "agent"), SocketPath: socket,
		TrustBundle: e.srv.CA().Bundle().X509Authorities(), Attestor: wla,
		Logger: testLogger(t).With("component", "agent"), SyncInterval: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan error, 1)
	go func() { adone <- a.Run(actx) }()
	t.Cleanup(func() { acancel(); <-adone })
	select {
	case <-a.Ready():
	case err := <-adone:
		t.Fatalf("agent: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("agent did not start")
	}

	k.CreateNamespace(t, "shop")
	k.CreateServiceAccount(t, "shop", "web")
	e.apply(t, controller.ClusterSPIFFEIDResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: latency}
spec:
  spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/pod/{{ .PodMeta.Name }}"
  podSelector: {matchLabels: {app: latency}}
`)
	e.start(t, func(c *controller.Config) { c.Resync = 10 * time.Second })

	var toEntry, toSVID []time.Duration
	for i := range latencyPods {
		name := fmt.Sprintf("lat-%02d", i)
		want := "spiffe://example.org/pod/" + name
		container := fmt.Sprintf("%064x", i+1)
		t0 := time.Now()
		pod := k.CreatePod(t, kubetest.PodSpec{Namespace: "shop", Name: name, ServiceAccount: "web", Node: "node-0",
			Labels: map[string]string{"app": "latency"}, HostIP: "192.0.2.10",
			Containers: []corev1.Container{{Name: "main", Image: "registry.example/web:1"}}})
		startContainer(t, k, pod, container)
		cgroup := "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + strings.ReplaceAll(string(pod.UID), "-", "_") +
			".slice/cri-containerd-" + container + ".scope\n"
		containertest.WriteFile(t, procRoot, pid, "cgroup", cgroup)

		var wg sync.WaitGroup
		var entryAt time.Time
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 6000 {
				if len(e.entriesFor(t, want)) == 1 {
					entryAt = time.Now()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		svidAt, err := watchFor(socket, want, 90*time.Second)
		wg.Wait()
		if err != nil || entryAt.IsZero() {
			t.Fatalf("pod %s: entry at %v, SVID: %v", name, entryAt, err)
		}
		toEntry = append(toEntry, entryAt.Sub(t0))
		toSVID = append(toSVID, svidAt.Sub(t0))
	}
	t.Logf("pod created -> entry in server, %d pods: p50 %v, p99 %v, max %v", latencyPods, pct(toEntry, 50), pct(toEntry, 99), pct(toEntry, 100))
	t.Logf("pod created -> SVID at the watching workload, %d pods: p50 %v, p99 %v, max %v", latencyPods, pct(toSVID, 50), pct(toSVID, 99), pct(toSVID, 100))
}

// startContainer writes the pod's status as a kubelet does when its
// container runs.
func startContainer(t testing.TB, k *kubetest.Cluster, pod *corev1.Pod, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods := k.Client.CoreV1().Pods(pod.Namespace)
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "main", Image: "registry.example/web:1", ImageID: "registry.example/web@sha256:" + strings.Repeat("4", 64), Ready: true,
		ContainerID: "containerd://" + id,
		State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
	}}
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// watchFor watches the Workload API until an X509-SVID for want arrives
// and returns when it did.
func watchFor(socket, want string, limit time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	w := &svidWatcher{want: want, got: make(chan time.Time, 1), cancel: cancel}
	err := workloadapi.WatchX509Context(ctx, w, workloadapi.WithAddr("unix://"+socket))
	select {
	case at := <-w.got:
		return at, nil
	default:
		return time.Time{}, fmt.Errorf("no SVID for %s: %w", want, err)
	}
}

type svidWatcher struct {
	want   string
	got    chan time.Time
	cancel context.CancelFunc
}

func (w *svidWatcher) OnX509ContextUpdate(c *workloadapi.X509Context) {
	for _, s := range c.SVIDs {
		if s.ID.String() == w.want {
			select {
			case w.got <- time.Now():
			default:
			}
			w.cancel()
			return
		}
	}
}

func (w *svidWatcher) OnX509ContextWatchError(error) {}

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))].Round(time.Millisecond)
}
