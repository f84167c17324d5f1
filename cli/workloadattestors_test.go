package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attest/systemd/systemdtest"
	"github.com/signet-id/signet/internal/container"
)

func TestAgentWorkloadAttestorsFromConfig(t *testing.T) {
	tests := []struct {
		name, plugins string
		types         []string // nil: the agent's default (unix)
		err           string
	}{
		{"none", ``, nil, ""},
		{"unix", `WorkloadAttestor "unix" {
  plugin_data {
    discover_workload_path = false
  }
}`, []string{"unix"}, ""},
		{"negative size limit", `WorkloadAttestor "unix" {
  plugin_data {
    workload_size_limit = -1
  }
}`, nil, `WorkloadAttestor "unix": workload_size_limit -1 is negative`},
		{"unknown option", `WorkloadAttestor "unix" {
  plugin_data {
    discover_workload_paths = true
  }
}`, nil, `WorkloadAttestor "unix": plugin_data`},
		{"systemd unknown option", `WorkloadAttestor "systemd" {
  plugin_data {
    bus = "unix:path=/run/dbus/system_bus_socket"
  }
}`, nil, `WorkloadAttestor "systemd": plugin_data`},
		{"systemd bad bus address", `WorkloadAttestor "systemd" {
  plugin_data {
    bus_address = "/run/dbus/system_bus_socket"
  }
}`, nil, `WorkloadAttestor "systemd": bus_address "/run/dbus/system_bus_socket" is not a D-Bus address`},
		{"twice", `WorkloadAttestor "unix" {
}
WorkloadAttestor "unix" {
}`, nil, `WorkloadAttestor "unix" is configured twice`},
		{"unknown type", `WorkloadAttestor "kubernetes" {
}`, nil, `unknown WorkloadAttestor "kubernetes" (supported: docker, k8s, systemd, unix)`},
		{"k8s", `WorkloadAttestor "k8s" {
  plugin_data {
    kubelet_secure_port = 10250
    skip_kubelet_verification = true
    token_path = "/run/secrets/token"
    max_poll_attempts = 3
    poll_retry_interval = "1s"
    reload_interval = "5m"
    node_name_env = "SIGNET_TEST_NODE_NAME"
    disable_container_selectors = true
    use_new_container_locator = true
    verbose_container_locator_logs = true
  }
}`, []string{"k8s"}, ""},
		{"k8s read-only port", `WorkloadAttestor "k8s" {
  plugin_data {
    kubelet_read_only_port = 10255
  }
}`, []string{"k8s"}, ""},
		{"k8s both ports", `WorkloadAttestor "k8s" {
  plugin_data {
    kubelet_read_only_port = 10255
    kubelet_secure_port = 10250
  }
}`, nil, `WorkloadAttestor "k8s": k8s: kubelet_read_only_port and kubelet_secure_port are mutually exclusive`},
		{"k8s bad interval", `WorkloadAttestor "k8s" {
  plugin_data {
    poll_retry_interval = "soon"
  }
}`, nil, `WorkloadAttestor "k8s": poll_retry_interval: invalid duration "soon"`},
		{"k8s legacy locator", `WorkloadAttestor "k8s" {
  plugin_data {
    use_new_container_locator = false
  }
}`, nil, `use_new_container_locator = false`},
		{"k8s sigstore", `WorkloadAttestor "k8s" {
  plugin_data {
    experimental {
      sigstore {
      }
    }
  }
}`, nil, `WorkloadAttestor "k8s": plugin_data`},
		{"docker", `WorkloadAttestor "docker" {
  plugin_data {
    docker_socket_path = "unix:///run/podman/podman.sock"
    docker_version = "1.41"
  }
}`, []string{"docker"}, ""},
		{"docker tcp", `WorkloadAttestor "docker" {
  plugin_data {
    docker_socket_path = "tcp://127.0.0.1:2375"
  }
}`, nil, `is not a unix:///path URL`},
		{"docker cgroup matchers", `WorkloadAttestor "docker" {
  plugin_data {
    container_id_cgroup_matchers = ["/docker/<id>"]
  }
}`, nil, `container_id_cgroup_matchers belong to SPIRE's legacy container locator`},
		{"all three", `WorkloadAttestor "unix" {
}
WorkloadAttestor "k8s" {
}
WorkloadAttestor "docker" {
}`, []string{"unix", "k8s", "docker"}, ""},
	}
	t.Setenv("SIGNET_TEST_NODE_NAME", "node-1")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "agent.hcl")
			writeFile(t, p, "agent {\n  trust_domain = \"example.org\"\n  insecure_bootstrap = true\n}\nplugins {\n"+tt.plugins+"\n}\n")
			f := agentFlags{configPath: p}
			_, _, err := f.build()
			if err == nil {
				var att agent.WorkloadAttestor
				att, err = buildWorkloadAttestors(f.plugins, nil)
				if err == nil {
					checkAttestors(t, att, tt.types)
				}
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestAgentSystemdWorkloadAttestor: a systemd block next to unix, its
// bus_address naming a real dbus-daemon with the systemd stand-in, which
// puts this test process in a unit: both attestors run on the caller.
func TestAgentSystemdWorkloadAttestor(t *testing.T) {
	bus := systemdtest.StartBus(t)
	sd := systemdtest.Serve(t, bus)
	sd.AddUnit(t, "signet-test.service", map[string]any{"Id": "signet-test.service", "FragmentPath": "/etc/systemd/system/signet-test.service"}, int32(os.Getpid()))
	p := filepath.Join(t.TempDir(), "agent.hcl")
	writeFile(t, p, fmt.Sprintf(`agent {
  trust_domain = "example.org"
  insecure_bootstrap = true
}
plugins {
  WorkloadAttestor "unix" {
  }
  WorkloadAttestor "systemd" {
    plugin_data {
      bus_address = %q
    }
  }
}
`, bus.Address))
	f := agentFlags{configPath: p}
	if _, _, err := f.build(); err != nil {
		t.Fatal(err)
	}
	att, err := buildWorkloadAttestors(f.plugins, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkAttestors(t, att, []string{"unix", "systemd"})
	sel, err := att.Attest(context.Background(), int32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range sel {
		if s.GetType() == "systemd" {
			got = append(got, s.GetValue())
		}
	}
	if want := []string{"id:signet-test.service", "fragment_path:/etc/systemd/system/signet-test.service"}; !slices.Equal(got, want) {
		t.Fatalf("systemd selectors %q, want %q", got, want)
	}
}

func checkAttestors(t *testing.T, att agent.WorkloadAttestor, want []string) {
	t.Helper()
	if want == nil {
		if att != nil {
			t.Fatalf("attestor %T, want the agent's default", att)
		}
		return
	}
	as, ok := att.(agent.Attestors)
	if !ok || len(as) != len(want) {
		t.Fatalf("attestors %#v, want %v", att, want)
	}
	for i, a := range as {
		if a.Type != want[i] {
			t.Fatalf("attestor %d is %q, want %q", i, a.Type, want[i])
		}
	}
	// The configured attestor runs: this test process attests itself
	// (not in a container: the container attestors add nothing, and ask
	// no kubelet or engine).
	if in, _ := container.Locate("/proc", int32(os.Getpid())); in.ContainerID != "" && !slices.Equal(want, []string{"unix"}) {
		t.Logf("this test runs in container %s: not attesting itself with %v", in.ContainerID, want)
		return
	}
	sel, err := as.Attest(context.Background(), int32(os.Getpid()))
	if err != nil || (slices.Contains(want, "unix") != (len(sel) > 0)) {
		t.Fatalf("Attest(self) = %v, %v", sel, err)
	}
}

func TestServerRefusesWorkloadAttestor(t *testing.T) {
	p := filepath.Join(t.TempDir(), "server.hcl")
	writeFile(t, p, "server {\n  trust_domain = \"example.org\"\n}\nplugins {\nWorkloadAttestor \"unix\" {\n}\n}\n")
	f := serverFlags{configPath: p}
	_, _, err := f.build(nil)
	if err == nil || !strings.Contains(err.Error(), `WorkloadAttestor "unix" belongs in the agent's configuration`) {
		t.Fatalf("err %v, want the server to refuse a WorkloadAttestor block", err)
	}
}
