package cli

import (
	"bytes"
	"path/filepath"
	"testing"
)

// TestK8sControllerRefusals: `k8s controller` says which flag is missing
// or wrong before it dials anything.
func TestK8sControllerRefusals(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "none")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no trust domain", []string{"--cluster-name", "prod"}, []string{"--trust-domain is required"}},
		{"bad trust domain", []string{"--trust-domain", "Example Org", "--cluster-name", "prod"}, []string{`--trust-domain "Example Org"`}},
		{"no cluster name", []string{"--trust-domain", "example.org"}, []string{"--cluster-name is required", "k8s_psat"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newK8sControllerCommand()
			cmd.SetArgs(append(tc.args, "--kubeconfig", kubeconfig))
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			assertUsage(t, cmd.Execute(), tc.want...)
		})
	}
}

// TestK8sControllerNeedsAKubeconfig: without API server access the error
// says to give --kubeconfig.
func TestK8sControllerNeedsAKubeconfig(t *testing.T) {
	cmd := newK8sControllerCommand()
	cmd.SetArgs([]string{"--trust-domain", "example.org", "--cluster-name", "prod", "--kubeconfig", filepath.Join(t.TempDir(), "none")})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.Execute()
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("--kubeconfig")) {
		t.Fatalf("error %v, want one naming --kubeconfig", err)
	}
}
