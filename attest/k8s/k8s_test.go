package k8s

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/k8s/k8stest"
	"github.com/signet-id/signet/attest/x509pop/x509poptest"
	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/signet-id/signet/internal/container/containertest"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

const (
	webContainer   = k8stest.WebContainerID
	envoyContainer = k8stest.EnvoyContainerID
	initContainer  = k8stest.InitContainerID
	webPod         = k8stest.WebPodUID
	webPodSystemd  = "6f2b1c3d_8e4a_4b5c_9d6e_7f8091a2b3c4"
	pendingPod     = k8stest.PendingPodUID
	workloadPID    = 4242
)

// webPodSelectors are the pod selectors of testdata/pod_list.json's web pod.
var webPodSelectors = []string{
	"sa:web", "ns:prod", "node-name:node-1", "pod-uid:" + webPod, "pod-name:web-7d9f8b6c5-x2x4q",
	"pod-image-count:2", "pod-init-image-count:1",
	"pod-image:docker.io/envoyproxy/envoy:v1.31.0",
	"pod-image:docker.io/envoyproxy/envoy@sha256:" + strings.Repeat("3", 64),
	"pod-image:registry.example/web:1.2",
	"pod-image:registry.example/web@sha256:" + strings.Repeat("2", 64),
	"pod-init-image:registry.example/web-migrate:1.2",
	"pod-init-image:registry.example/web-migrate@sha256:" + strings.Repeat("1", 64),
	"pod-label:app:web", "pod-label:pod-template-hash:7d9f8b6c5",
	"pod-owner:ReplicaSet:web-7d9f8b6c5", "pod-owner-uid:ReplicaSet:a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
}

// tokenConfig configures an attestor for k with a token and its CA.
func tokenConfig(t *testing.T, k *k8stest.Kubelet, cgroup string) Config {
	return Config{
		SecurePort:    k.Port(t),
		KubeletCAPath: k.CAFile(t),
		TokenPath:     k8stest.TokenFile(t, k.Token),
		ProcRoot:      containertest.ProcRoot(t, workloadPID, cgroup),
	}
}

func attest(t *testing.T, cfg Config) ([]string, error) {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := a.Attest(context.Background(), workloadPID)
	return containertest.Values(t, SelectorType, sel), err
}

func TestAttestSelectors(t *testing.T) {
	k := k8stest.New(t, k8stest.PodList)
	web := append(slices.Clone(webPodSelectors), "container-name:web",
		"container-image:registry.example/web:1.2", "container-image:registry.example/web@sha256:"+strings.Repeat("2", 64))
	envoy := append(slices.Clone(webPodSelectors), "container-name:envoy",
		"container-image:docker.io/envoyproxy/envoy:v1.31.0", "container-image:docker.io/envoyproxy/envoy@sha256:"+strings.Repeat("3", 64))
	migrate := append(slices.Clone(webPodSelectors), "container-name:migrate",
		"container-image:registry.example/web-migrate:1.2", "container-image:registry.example/web-migrate@sha256:"+strings.Repeat("1", 64))
	for _, tc := range []struct {
		name, cgroup string
		want         []string
	}{
		{"cgroup v2, systemd driver, containerd", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + webPodSystemd + ".slice/cri-containerd-" + webContainer + ".scope\n", web},
		{"cgroup v1, cgroupfs driver", "2:cpu,cpuacct:/kubepods/besteffort/pod" + webPod + "/" + envoyContainer + "\n1:name=systemd:/kubepods/besteffort/pod" + webPod + "/" + envoyContainer + "\n", envoy},
		{"init container", "0::/kubepods/besteffort/pod" + webPod + "/" + initContainer + "\n", migrate},
		// The agent's cgroup namespace hides the pod: every pod is searched.
		{"cgroup namespace, cri-o", "0::/../crio-" + webContainer + ".scope\n", web},
		{"not in a container", "0::/user.slice/user-1000.slice/session-2.scope\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := attest(t, tokenConfig(t, k, tc.cgroup))
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("Attest = %q, %v\nwant %q", got, err, tc.want)
			}
		})
	}
}

func TestAttestNotInContainerAsksNoKubelet(t *testing.T) {
	k := k8stest.New(t, k8stest.PodList)
	got, err := attest(t, tokenConfig(t, k, "1:name=systemd:/user.slice\n"))
	if err != nil || got != nil || k.Requests() != 0 {
		t.Fatalf("Attest = %q, %v after %d kubelet requests; want no selectors, no request", got, err, k.Requests())
	}
}

func TestKubeletAuthentication(t *testing.T) {
	k := k8stest.New(t, k8stest.PodList)
	cgroup := "0::/kubepods/pod" + webPod + "/" + webContainer + "\n"
	goodCert, goodKey := k8stest.ClientCert(t, k.ClientCA)
	otherCert, otherKey := k8stest.ClientCert(t, x509poptest.NewCA(t, "another CA", nil, time.Now().Add(-time.Hour)))
	for _, tc := range []struct {
		name   string
		adjust func(*Config)
		ok     bool
	}{
		{"token", func(*Config) {}, true},
		{"wrong token", func(c *Config) { c.TokenPath = k8stest.TokenFile(t, "stolen-token") }, false},
		{"client certificate", func(c *Config) { c.CertificatePath, c.PrivateKeyPath = goodCert, goodKey }, true},
		{"client certificate of another CA", func(c *Config) { c.CertificatePath, c.PrivateKeyPath = otherCert, otherKey }, false},
		{"anonymous", func(c *Config) { c.TokenPath, c.UseAnonymousAuthentication = "", true }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tokenConfig(t, k, cgroup)
			tc.adjust(&cfg)
			got, err := attest(t, cfg)
			if tc.ok {
				if err != nil || len(got) == 0 {
					t.Fatalf("Attest = %q, %v", got, err)
				}
				return
			}
			if !errors.Is(err, ErrKubelet) || got != nil {
				t.Fatalf("Attest = %q, %v; want an ErrKubelet error", got, err)
			}
			if tc.name != "client certificate of another CA" && !strings.Contains(err.Error(), "401") {
				t.Fatalf("err %v, want the kubelet's 401", err)
			}
		})
	}
}

func TestKubeletVerification(t *testing.T) {
	k := k8stest.New(t, k8stest.PodList)
	impostor := k8stest.New(t, k8stest.PodList) // another self-signed certificate
	cgroup := "0::/kubepods/pod" + webPod + "/" + webContainer + "\n"
	for _, tc := range []struct {
		name   string
		adjust func(*Config)
		ok     bool
	}{
		{"chain only (no node name)", func(*Config) {}, true},
		{"node name in the certificate", func(c *Config) { c.NodeName = "127.0.0.1" }, true},
		{"untrusted kubelet", func(c *Config) { c.KubeletCAPath = impostor.CAFile(t) }, false},
		{"untrusted kubelet, node name", func(c *Config) { c.KubeletCAPath, c.NodeName = impostor.CAFile(t), "127.0.0.1" }, false},
		{"untrusted kubelet, verification skipped", func(c *Config) { c.KubeletCAPath, c.SkipKubeletVerification = impostor.CAFile(t), true }, true},
		{"no CA file", func(c *Config) { c.KubeletCAPath = c.KubeletCAPath + ".missing" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tokenConfig(t, k, cgroup)
			tc.adjust(&cfg)
			got, err := attest(t, cfg)
			if tc.ok != (err == nil) || tc.ok != (len(got) > 0) {
				t.Fatalf("Attest = %q, %v; want ok=%v", got, err, tc.ok)
			}
		})
	}
}

func TestReadOnlyPort(t *testing.T) {
	ro := k8stest.ReadOnly(t, k8stest.PodList)
	got, err := attest(t, Config{
		ReadOnlyPort: ro,
		ProcRoot:     containertest.ProcRoot(t, workloadPID, "0::/kubepods/pod"+webPod+"/"+webContainer+"\n"),
	})
	if err != nil || !slices.Contains(got, "container-name:web") {
		t.Fatalf("Attest = %q, %v", got, err)
	}
}

// TestPollsUntilListed: the kubelet lists a container a moment after it
// starts; the attestor asks again every poll_retry_interval, at most
// max_poll_attempts times.
func TestPollsUntilListed(t *testing.T) {
	full := k8stest.PodList
	empty := []byte(`{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}`)
	cgroup := "0::/kubepods/pod" + webPod + "/" + webContainer + "\n"
	for _, tc := range []struct {
		name         string
		listedFrom   int // the kubelet request from which the pod is listed
		maxAttempts  int
		wantRequests int
		wantErr      error
	}{
		{"listed at once", 1, 3, 1, nil},
		{"listed on the third poll", 3, 5, 3, nil},
		{"never listed", 1000, 4, 4, ErrContainerNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := k8stest.New(t, nil)
			k.SetLists(func(n int) []byte {
				if n >= tc.listedFrom {
					return full
				}
				return empty
			})
			clk := fakeclock.New(time.Unix(1_800_000_000, 0))
			cfg := tokenConfig(t, k, cgroup)
			cfg.Clock, cfg.MaxPollAttempts, cfg.PollRetryInterval = clk, tc.maxAttempts, time.Second
			a, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			type result struct {
				sel []*types.Selector
				err error
			}
			done := make(chan result, 1)
			go func() {
				sel, err := a.Attest(ctx, workloadPID)
				done <- result{sel, err}
			}()
			for {
				select {
				case r := <-done:
					if !errors.Is(r.err, tc.wantErr) || (tc.wantErr == nil && len(r.sel) == 0) {
						t.Fatalf("Attest = %v, %v; want err %v", r.sel, r.err, tc.wantErr)
					}
					if k.Requests() != tc.wantRequests {
						t.Fatalf("%d kubelet requests, want %d", k.Requests(), tc.wantRequests)
					}
					return
				default:
				}
				if clk.Timers() > 0 {
					clk.Advance(time.Second)
					continue
				}
				waitCtx, stop := context.WithTimeout(ctx, 10*time.Millisecond)
				_ = clk.WaitForTimers(waitCtx, 1)
				stop()
				if ctx.Err() != nil {
					t.Fatal("attestation did not finish")
				}
			}
		})
	}
}

func TestTwoPodsWithTheContainer(t *testing.T) {
	k := k8stest.New(t, k8stest.DuplicatePodList)
	got, err := attest(t, tokenConfig(t, k, "0::/../cri-containerd-"+webContainer+".scope\n"))
	if !errors.Is(err, ErrAmbiguous) || got != nil {
		t.Fatalf("Attest = %q, %v; want ErrAmbiguous", got, err)
	}
}

// A pod UID in the cgroups limits the search to that pod: a container ID
// forged into another pod's cgroup path does not borrow the pod's
// identity.
func TestPodUIDMustMatch(t *testing.T) {
	k := k8stest.New(t, k8stest.PodList)
	cfg := tokenConfig(t, k, "0::/kubepods/pod"+pendingPod+"/"+webContainer+"\n")
	cfg.MaxPollAttempts = 1
	got, err := attest(t, cfg)
	if !errors.Is(err, ErrContainerNotFound) || got != nil {
		t.Fatalf("Attest = %q, %v; want ErrContainerNotFound", got, err)
	}
}

func TestDisableContainerSelectors(t *testing.T) {
	k := k8stest.New(t, k8stest.PodList)
	// The pending pod's container has not started: the kubelet lists no ID.
	cgroup := "0::/kubepods/besteffort/pod" + pendingPod + "/" + strings.Repeat("e", 64) + "\n"
	cfg := tokenConfig(t, k, cgroup)
	cfg.MaxPollAttempts = 1
	if got, err := attest(t, cfg); !errors.Is(err, ErrContainerNotFound) {
		t.Fatalf("container selectors enabled: Attest = %q, %v; want ErrContainerNotFound", got, err)
	}
	cfg.DisableContainerSelectors = true
	got, err := attest(t, cfg)
	want := []string{"sa:default", "ns:jobs", "node-name:node-1", "pod-uid:" + pendingPod, "pod-name:batch-q8w7e",
		"pod-image-count:1", "pod-init-image-count:0", "pod-image:", "pod-image:registry.example/web:1.2",
		"pod-label:job-name:batch", "pod-owner:Job:batch", "pod-owner-uid:Job:b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Attest = %q, %v\nwant %q", got, err, want)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"both ports", Config{ReadOnlyPort: 10255, SecurePort: 10250}},
		{"port out of range", Config{SecurePort: 70000}},
		{"certificate without key", Config{CertificatePath: "/c"}},
		{"key without certificate", Config{PrivateKeyPath: "/k"}},
		{"anonymous with token", Config{UseAnonymousAuthentication: true, TokenPath: "/t"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("New accepted the configuration")
			}
		})
	}
}

// The token is read again every reload_interval (a projected service
// account token rotates), not at every attestation.
func TestCredentialsReload(t *testing.T) {
	k := k8stest.New(t, k8stest.PodList)
	clk := fakeclock.New(time.Unix(1_800_000_000, 0))
	cfg := tokenConfig(t, k, "0::/kubepods/pod"+webPod+"/"+webContainer+"\n")
	cfg.Clock, cfg.ReloadInterval, cfg.PollRetryInterval, cfg.MaxPollAttempts = clk, time.Minute, time.Second, 1
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := a.Attest(ctx, workloadPID); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.TokenPath, []byte("rotated-but-wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * time.Second) // past the pod list cache, before the reload
	if _, err := a.Attest(ctx, workloadPID); err != nil {
		t.Fatalf("before reload_interval: %v", err)
	}
	clk.Advance(30 * time.Second)
	if _, err := a.Attest(ctx, workloadPID); !errors.Is(err, ErrKubelet) {
		t.Fatalf("after reload_interval: err %v, want the kubelet to refuse the new token", err)
	}
	if k.Requests() != 2 {
		t.Fatalf("%d authenticated kubelet requests, want 2", k.Requests())
	}
}
