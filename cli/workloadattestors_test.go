package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/agent"
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
		{"twice", `WorkloadAttestor "unix" {
}
WorkloadAttestor "unix" {
}`, nil, `WorkloadAttestor "unix" is configured twice`},
		{"unknown type", `WorkloadAttestor "kubernetes" {
}`, nil, `unknown WorkloadAttestor "kubernetes" (supported: unix)`},
	}
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
	// The configured attestor runs: this test process attests itself.
	sel, err := as.Attest(context.Background(), int32(os.Getpid()))
	if err != nil || len(sel) == 0 {
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
