package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/conformance/kubetest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestValidateK8sBundleNotifier: `server validate` reads Notifier
// "k8sbundle" and refuses, naming the setting, a kubeconfig it cannot
// read or parse and names the API server would refuse.
func TestValidateK8sBundleNotifier(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(good, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: "t"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "garbage")
	if err := os.WriteFile(bad, []byte("clusters: {{{"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, data string
		want       string // "" : valid
	}{
		{"in-cluster", "", ""},
		{"kubeconfig", fmt.Sprintf(`kube_config_file_path = %q`, good), ""},
		{"missing kubeconfig", fmt.Sprintf(`kube_config_file_path = %q`, filepath.Join(dir, "none")), `kube_config_file_path "` + filepath.Join(dir, "none") + `"`},
		{"malformed kubeconfig", fmt.Sprintf(`kube_config_file_path = %q`, bad), `kube_config_file_path "` + bad + `"`},
		{"namespace", `namespace = "Not_A_Namespace"`, `k8sbundle: namespace "Not_A_Namespace"`},
		{"config_map", `config_map = "bad name"`, `k8sbundle: config_map "bad name"`},
		{"config_map_key", `config_map_key = "a/b"`, `k8sbundle: config_map_key "a/b"`},
		{"webhook_label", `webhook_label = "x"`, "webhook_label is not supported"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := filepath.Join(dir, fmt.Sprintf("s%d.conf", i))
			src := fmt.Sprintf("server {\n  trust_domain = \"example.org\"\n  data_dir = %q\n}\nplugins {\n  Notifier \"k8sbundle\" {\n    plugin_data {\n      %s\n    }\n  }\n}\n", filepath.Join(dir, "data"), tt.data)
			if err := os.WriteFile(conf, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := run(t, "server", "validate", "--config", conf)
			if tt.want == "" {
				if code != 0 || out != "configuration is valid\n" || errOut != "" {
					t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
				}
				return
			}
			if code != 2 || !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, `Notifier "k8sbundle"`) {
				t.Fatalf("exit %d, stderr %q; want exit 2 naming %q", code, errOut, tt.want)
			}
		})
	}
}

// TestServerRunWritesBundleConfigMap: `server run` with Notifier
// "k8sbundle" and a kubeconfig writes into a real kube-apiserver the
// ConfigMap agents bootstrap from: the same PEM `signet bundle show`
// prints.
func TestServerRunWritesBundleConfigMap(t *testing.T) {
	c := kubetest.Start(t)
	c.CreateNamespace(t, "signet")
	dir, err := os.MkdirTemp("", "sgk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	conf := filepath.Join(dir, "server.conf")
	src := fmt.Sprintf(`server {
  trust_domain = "example.org"
  bind_address = "127.0.0.1"
  bind_port    = 0
  data_dir     = %q
  socket_path  = %q
}
plugins {
  Notifier "k8sbundle" {
    plugin_data {
      namespace             = "signet"
      config_map            = "signet-bundle"
      config_map_key        = "bundle.pem"
      kube_config_file_path = %q
    }
  }
}
`, filepath.Join(dir, "data"), sock, c.KubeconfigFile)
	if err := os.WriteFile(conf, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- mainIO(ctx, []string{"server", "run", "-config", conf}, nil, &out, &errOut) }()
	var got string
	for i := 0; i < 1200 && got == ""; i++ {
		select {
		case code := <-done:
			t.Fatalf("server run exited %d: %s", code, errOut.String())
		case <-time.After(100 * time.Millisecond):
		}
		cm, err := c.Client.CoreV1().ConfigMaps("signet").Get(t.Context(), "signet-bundle", metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		if err == nil {
			got = cm.Data["bundle.pem"]
		}
	}
	if got == "" {
		t.Fatal("the ConfigMap signet/signet-bundle never got bundle.pem")
	}
	shown, _ := cli(t, sock, 0, "bundle", "show")
	if got != shown {
		t.Errorf("ConfigMap bundle.pem:\n%s\nsignet bundle show:\n%s", got, shown)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("server run exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "bundle ConfigMap written") {
		t.Errorf("no log of the write:\n%s", errOut.String())
	}
}
