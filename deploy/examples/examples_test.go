// Package examples holds no code: its tests check the example
// configurations in this directory. Each one passes `signet server
// validate` or `signet agent validate` with the files it names written
// under a temporary root (validate reads them, so each is also removed in
// turn and must then be refused), and the Kubernetes ones are the
// ConfigMaps in deploy/kubernetes.
package examples

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/signet-id/signet/deploy/deploytest"
)

// kind is how a file an example names is made.
type kind int

const (
	bundle kind = iota // a PEM CA certificate
	kek                // 32 random bytes
	token              // a join token
	leaf               // a certificate; key is the next path
	key                // written with the leaf before it
)

type file struct {
	path string
	kind kind
}

var examples = []struct {
	path   string
	daemon string
	// prefixes are moved under the test's root.
	prefixes []string
	files    []file
}{
	{"baremetal/server.hcl", "server", []string{"/etc/signet/"}, []file{{"/etc/signet/node-ca.pem", bundle}}},
	{"baremetal/agent.hcl", "agent", []string{"/etc/signet/"}, []file{{"/etc/signet/bundle.pem", bundle}, {"/etc/signet/join-token", token}}},
	{"ha/server.hcl", "server", []string{"/etc/signet/"}, []file{
		{"/etc/signet/kek", kek}, {"/etc/signet/etcd/ca.crt", bundle},
		{"/etc/signet/etcd/client.crt", leaf}, {"/etc/signet/etcd/client.key", key},
		{"/etc/signet/node-ca.pem", bundle},
	}},
	{"ha/agent.hcl", "agent", []string{"/etc/signet/"}, []file{
		{"/etc/signet/bundle.pem", bundle}, {"/etc/signet/node.crt", leaf}, {"/etc/signet/node.key", key},
	}},
	{"kubernetes/server.hcl", "server", nil, nil},
	{"kubernetes/agent.hcl", "agent", []string{"/run/signet/bundle/"}, []file{{"/run/signet/bundle/bundle.pem", bundle}}},
	{"kubernetes/server-ha.hcl", "server", []string{"/run/signet/secrets/"}, []file{
		{"/run/signet/secrets/kek", kek}, {"/run/signet/secrets/etcd-ca.crt", bundle},
		{"/run/signet/secrets/etcd-client.crt", leaf}, {"/run/signet/secrets/etcd-client.key", key},
	}},
}

// writeFiles writes files under root.
func writeFiles(t *testing.T, root string, files []file) {
	t.Helper()
	ca := deploytest.NewAuthority(t, "example CA")
	for i, f := range files {
		p := filepath.Join(root, f.path)
		switch f.kind {
		case bundle:
			ca.WriteBundle(t, p)
		case kek:
			deploytest.WriteKEK(t, p)
		case token:
			deploytest.WriteFile(t, p, []byte("3c5f0b4e-7a91-4f4a-9d0e-2b8c6f1a9e77\n"), 0o600)
		case leaf:
			if i+1 >= len(files) || files[i+1].kind != key {
				t.Fatalf("%s: a leaf needs its key next", f.path)
			}
			ca.WriteLeaf(t, "example", p, filepath.Join(root, files[i+1].path))
		case key:
		}
	}
}

// TestExamplesValidate: every example passes validate with no warning once
// the files it names exist, and is refused, naming the file, when any one
// of them is missing.
func TestExamplesValidate(t *testing.T) {
	for _, ex := range examples {
		t.Run(ex.path, func(t *testing.T) {
			src, err := os.ReadFile(ex.path)
			if err != nil {
				t.Fatal(err)
			}
			root := t.TempDir()
			writeFiles(t, root, ex.files)
			hcl := deploytest.Rehome(t, string(src), root, ex.prefixes...)
			if code, out := deploytest.Validate(t, ex.daemon, hcl); code != 0 || out != "configuration is valid\n" {
				t.Fatalf("validate: exit %d: %s", code, out)
			}
			for _, f := range ex.files {
				p := filepath.Join(root, f.path)
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if code, out := deploytest.Validate(t, ex.daemon, hcl); code == 0 || !strings.Contains(out, p) {
					t.Errorf("without %s: exit %d: %s", f.path, code, out)
				}
				deploytest.WriteFile(t, p, data, 0o600)
			}
		})
	}
}

// TestKubernetesExamplesAreTheConfigMaps: the kubernetes/ examples are the
// HCL of the ConfigMaps the cluster runs, below their header comment.
func TestKubernetesExamplesAreTheConfigMaps(t *testing.T) {
	for _, tt := range []struct{ example, configMap, key string }{
		{"kubernetes/server.hcl", "../kubernetes/base/server-config.yaml", "server.conf"},
		{"kubernetes/agent.hcl", "../kubernetes/base/agent-config.yaml", "agent.conf"},
		{"kubernetes/server-ha.hcl", "../kubernetes/overlays/ha/server-config.yaml", "server.conf"},
	} {
		raw, err := os.ReadFile(tt.configMap)
		if err != nil {
			t.Fatal(err)
		}
		var cm struct {
			Kind string            `json:"kind"`
			Data map[string]string `json:"data"`
		}
		if err := yaml.Unmarshal(raw, &cm); err != nil {
			t.Fatalf("%s: %v", tt.configMap, err)
		}
		want, ok := cm.Data[tt.key]
		if cm.Kind != "ConfigMap" || !ok {
			t.Fatalf("%s: no ConfigMap with data.%s", tt.configMap, tt.key)
		}
		src, err := os.ReadFile(tt.example)
		if err != nil {
			t.Fatal(err)
		}
		_, body, ok := strings.Cut(string(src), "\n\n")
		if !ok || !strings.HasPrefix(string(src), "# Copy of data."+tt.key) {
			t.Fatalf("%s: want the header comment, a blank line, then the HCL", tt.example)
		}
		if body != want {
			t.Errorf("%s differs from data.%s in %s: copy the ConfigMap's HCL into it", tt.example, tt.key, tt.configMap)
		}
	}
}
