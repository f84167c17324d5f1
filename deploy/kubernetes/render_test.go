// Tests of the Kubernetes manifests: every kustomization renders (with
// kustomize's own library, as `kubectl apply -k` does), its HCL passes
// `signet server|agent validate`, the pieces that must agree do, and
// (apiserver_test.go) a real kube-apiserver admits every object and the
// RBAC grants no more than the daemons use.
package kubernetes

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/cli"
	"github.com/signet-id/signet/config"
	"github.com/signet-id/signet/deploy/deploytest"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// overlays are the kustomizations a user applies, and the base.
var overlays = []string{"base", "overlays/single", "overlays/ha"}

// render builds the kustomization in dir (relative to this directory) and
// returns its objects in kustomize's order.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range m.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %s: %v", dir, r.CurId(), err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			t.Fatalf("%s: %s: %v", dir, r.CurId(), err)
		}
		objs = append(objs, u)
	}
	if len(objs) == 0 {
		t.Fatalf("%s renders no objects", dir)
	}
	return objs
}

// find returns the rendered object of kind and name, failing without it.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s among the rendered objects", kind, name)
	return nil
}

// configData is key of ConfigMap name.
func configData(t *testing.T, objs []*unstructured.Unstructured, name, key string) string {
	t.Helper()
	s, ok, err := unstructured.NestedString(find(t, objs, "ConfigMap", name).Object, "data", key)
	if err != nil || !ok || s == "" {
		t.Fatalf("ConfigMap %s has no data.%s (%v)", name, key, err)
	}
	return s
}

// validate runs `signet <daemon> validate --config <hcl> extra...` through
// the cli package and returns its exit code and output.
func validate(t *testing.T, daemon, hcl string, extra ...string) (int, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), daemon+".conf")
	if err := os.WriteFile(p, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	args := append([]string{daemon, "validate", "--config", p}, extra...)
	code := cli.Main(t.Context(), args, &out, &out)
	return code, out.String()
}

// bundleFile writes a self-signed CA certificate as a PEM trust bundle
// (the signet-bundle ConfigMap that the agent reads is the operator's).
func bundleFile(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test bundle"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRenderedConfigsValidate: the HCL in every rendered ConfigMap passes
// `signet server validate` / `signet agent validate` with no warning, and
// the same check refuses a broken copy (so it can fail).
func TestRenderedConfigsValidate(t *testing.T) {
	bundle := bundleFile(t)
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			server := configData(t, objs, "signet-server", "server.conf")
			if code, out := validate(t, "server", withServerFiles(t, server)); code != 0 || out != "configuration is valid\n" {
				t.Errorf("server.conf: exit %d: %s", code, out)
			}
			agent := configData(t, objs, "signet-agent", "agent.conf")
			if code, out := validate(t, "agent", agent, "--trust-bundle", bundle); code != 0 || out != "configuration is valid\n" {
				t.Errorf("agent.conf: exit %d: %s", code, out)
			}
			broken := strings.Replace(server, "service_account_allow_list", "service_account_allowlist", 1)
			if code, out := validate(t, "server", broken); code == 0 || !strings.Contains(out, "service_account_allowlist") {
				t.Errorf("a misspelt key passed validate: exit %d: %s", code, out)
			}
		})
	}
}

// withServerFiles writes the files a server configuration names that
// `server validate` reads (ca_kek_path, the etcd block's client
// certificate, key and CA: the Secrets of overlays/ha), under a temporary
// root, and returns the configuration with those paths moved there.
func withServerFiles(t *testing.T, hcl string) string {
	t.Helper()
	sf := loadServer(t, hcl)
	root := t.TempDir()
	dirs := map[string]bool{}
	at := func(p string) string {
		dirs[filepath.Dir(p)+"/"] = true
		return filepath.Join(root, p)
	}
	if p := sf.Server.CAKEKPath; p != "" {
		deploytest.WriteKEK(t, at(p))
	}
	if e := sf.Etcd; e != nil {
		ca := deploytest.NewAuthority(t, "etcd CA")
		if e.CAFile != "" {
			ca.WriteBundle(t, at(e.CAFile))
		}
		if e.CertFile != "" {
			ca.WriteLeaf(t, "signet-server", at(e.CertFile), at(e.KeyFile))
		}
	}
	prefixes := slices.Sorted(maps.Keys(dirs))
	if len(prefixes) == 0 {
		return hcl
	}
	return deploytest.Rehome(t, hcl, root, prefixes...)
}

// TestPiecesAgree: what one object names, another provides. The agent's
// projected token has the audience and path the server and agent
// configurations expect, both (and the controller's flags) name the same
// k8s_psat cluster and trust domain, the allow list names the agent's account, the paths the HCL names
// are mounted, and the HA overlay runs 3 servers on an external etcd with
// a PDB keeping 2.
func TestPiecesAgree(t *testing.T) {
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			sf := loadServer(t, configData(t, objs, "signet-server", "server.conf"))
			af := loadAgent(t, configData(t, objs, "signet-agent", "agent.conf"))
			if sf.Server.TrustDomain != af.Agent.TrustDomain {
				t.Errorf("trust domains differ: server %q, agent %q", sf.Server.TrustDomain, af.Agent.TrustDomain)
			}
			psat := pluginData(t, objs, "signet-server", "server.conf")
			agentPSAT := pluginData(t, objs, "signet-agent", "agent.conf")
			if !strings.Contains(psat, `"`+agentPSAT+`" = {`) {
				t.Errorf("the agent's cluster %q is not among the server's k8s_psat clusters:\n%s", agentPSAT, psat)
			}
			if !strings.Contains(psat, `service_account_allow_list = ["signet:signet-agent"]`) || !strings.Contains(psat, `audience = ["signet-server"]`) {
				t.Errorf("server k8s_psat allow list or audience:\n%s", psat)
			}

			ds := find(t, objs, "DaemonSet", "signet-agent")
			spec := podSpec(t, ds)
			if spec["hostPID"] != true || spec["serviceAccountName"] != "signet-agent" {
				t.Errorf("agent pod: hostPID %v, serviceAccountName %v", spec["hostPID"], spec["serviceAccountName"])
			}
			var token map[string]any
			for _, v := range list(spec["volumes"]) {
				if v["name"] == "psat-token" {
					src := list(v["projected"].(map[string]any)["sources"])
					token = src[0]["serviceAccountToken"].(map[string]any)
				}
			}
			if token == nil || token["audience"] != "signet-server" {
				t.Fatalf("agent projected token: %v", token)
			}
			mounts := mountPaths(t, spec, "agent")
			wantMounted(t, "agent", mounts, "/var/run/secrets/tokens/"+token["path"].(string), filepath.Dir(af.Agent.SocketPath), af.Agent.DataDir, "/run/signet/bundle/bundle.pem", "/etc/signet/agent.conf")

			checkBundleNotifier(t, objs, sf, af.Agent.TrustBundlePath, spec)

			sts := find(t, objs, "StatefulSet", "signet-server")
			sspec := podSpec(t, sts)
			wantMounted(t, "server", mountPaths(t, sspec, "server"), sf.Server.DataDir, filepath.Dir(sf.Server.SocketPath), "/etc/signet/server.conf")
			wantMounted(t, "controller", mountPaths(t, sspec, "controller"), filepath.Dir(sf.Server.SocketPath))
			args := containerArgs(t, sspec, "controller")
			for _, want := range []string{"--trust-domain=" + sf.Server.TrustDomain, "--cluster-name=" + agentPSAT, "--socket-path=" + sf.Server.SocketPath} {
				if !slices.Contains(args, want) {
					t.Errorf("controller args %v lack %s", args, want)
				}
			}
			if sspec["serviceAccountName"] != "signet-server" {
				t.Errorf("server pod account %v", sspec["serviceAccountName"])
			}

			replicas, _, _ := unstructured.NestedInt64(sts.Object, "spec", "replicas")
			pdb := find(t, objs, "PodDisruptionBudget", "signet-server").Object["spec"].(map[string]any)
			_, claims := sts.Object["spec"].(map[string]any)["volumeClaimTemplates"]
			if dir == "overlays/ha" {
				if replicas != 3 || sf.Etcd == nil || sf.Server.CAKEKPath == "" || claims {
					t.Errorf("ha: replicas %d, etcd %v, ca_kek_path %q, volumeClaimTemplates %v", replicas, sf.Etcd, sf.Server.CAKEKPath, claims)
				}
				if pdb["minAvailable"] != int64(2) || pdb["maxUnavailable"] != nil {
					t.Errorf("ha PDB %v", pdb)
				}
				wantMounted(t, "server", mountPaths(t, sspec, "server"), filepath.Dir(sf.Server.CAKEKPath), filepath.Dir(sf.Etcd.KeyFile))
			} else if replicas != 1 || sf.Etcd != nil || !claims {
				t.Errorf("%s: replicas %d, etcd %v, volumeClaimTemplates %v", dir, replicas, sf.Etcd, claims)
			}
		})
	}
}

// checkBundleNotifier: the server's Notifier "k8sbundle" writes the
// ConfigMap and key the agent pods mount as their trust bundle, in their
// namespace, and a Role bound to the server's account lets it get, patch
// and update that ConfigMap by name.
func checkBundleNotifier(t *testing.T, objs []*unstructured.Unstructured, sf *config.ServerFile, trustBundlePath string, agentSpec map[string]any) {
	t.Helper()
	if sf.Plugins == nil || len(sf.Plugins.Notifiers) != 1 || sf.Plugins.Notifiers[0].Type != "k8sbundle" {
		t.Fatal("server.conf has no Notifier \"k8sbundle\"")
	}
	d, err := config.DecodeK8sBundle(sf.Plugins.Notifiers[0])
	if err != nil {
		t.Fatal(err)
	}
	ds := find(t, objs, "DaemonSet", "signet-agent")
	var volume string
	for _, v := range list(agentSpec["volumes"]) {
		if cm, ok := v["configMap"].(map[string]any); ok && cm["name"] == d.ConfigMap {
			volume = v["name"].(string)
		}
	}
	if d.Namespace != ds.GetNamespace() || volume == "" {
		t.Fatalf("the notifier writes %s/%s, the agents (namespace %s) mount no such ConfigMap", d.Namespace, d.ConfigMap, ds.GetNamespace())
	}
	mounted := false
	for _, c := range list(agentSpec["containers"]) {
		for _, m := range list(c["volumeMounts"]) {
			mounted = mounted || m["name"] == volume && filepath.Join(m["mountPath"].(string), d.ConfigMapKey) == trustBundlePath
		}
	}
	if !mounted {
		t.Errorf("trust_bundle_path %s is not key %s of the mounted ConfigMap %s", trustBundlePath, d.ConfigMapKey, d.ConfigMap)
	}
	role := find(t, objs, "Role", "signet-server-bundle")
	if role.GetNamespace() != d.Namespace {
		t.Errorf("Role signet-server-bundle in %q, the ConfigMap in %q", role.GetNamespace(), d.Namespace)
	}
	named := false
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	for _, r := range rules {
		names, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resourceNames")
		named = named || slices.Equal(names, []string{d.ConfigMap})
	}
	if !named {
		t.Errorf("Role signet-server-bundle does not name the ConfigMap %s", d.ConfigMap)
	}
	binding := find(t, objs, "RoleBinding", "signet-server-bundle")
	subjects, _, _ := unstructured.NestedSlice(binding.Object, "subjects")
	if len(subjects) != 1 || subjects[0].(map[string]any)["name"] != "signet-server" {
		t.Errorf("RoleBinding signet-server-bundle subjects %v", subjects)
	}
}

func loadServer(t *testing.T, hcl string) *config.ServerFile {
	t.Helper()
	p := filepath.Join(t.TempDir(), "server.conf")
	if err := os.WriteFile(p, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.LoadServer(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func loadAgent(t *testing.T, hcl string) *config.AgentFile {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.conf")
	if err := os.WriteFile(p, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.LoadAgent(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// pluginData returns the k8s_psat NodeAttestor block of a ConfigMap's HCL:
// for the agent the cluster name, for the server the clusters text.
func pluginData(t *testing.T, objs []*unstructured.Unstructured, name, key string) string {
	t.Helper()
	hcl := configData(t, objs, name, key)
	i := strings.Index(hcl, `NodeAttestor "k8s_psat"`)
	if i < 0 {
		t.Fatalf("%s has no k8s_psat NodeAttestor", name)
	}
	block := hcl[i:]
	if name == "signet-server" {
		return block
	}
	const k = `cluster    = "`
	j := strings.Index(block, k)
	if j < 0 {
		t.Fatalf("agent k8s_psat has no cluster:\n%s", block)
	}
	rest := block[j+len(k):]
	return rest[:strings.IndexByte(rest, '"')]
}

func podSpec(t *testing.T, o *unstructured.Unstructured) map[string]any {
	t.Helper()
	spec, ok, err := unstructured.NestedMap(o.Object, "spec", "template", "spec")
	if err != nil || !ok {
		t.Fatalf("%s %s has no pod spec (%v)", o.GetKind(), o.GetName(), err)
	}
	return spec
}

func list(v any) []map[string]any {
	var out []map[string]any
	for _, e := range v.([]any) {
		out = append(out, e.(map[string]any))
	}
	return out
}

// mountPaths are the mount paths of container name in spec.
func mountPaths(t *testing.T, spec map[string]any, name string) []string {
	t.Helper()
	for _, c := range list(spec["containers"]) {
		if c["name"] != name {
			continue
		}
		var paths []string
		for _, m := range list(c["volumeMounts"]) {
			paths = append(paths, m["mountPath"].(string))
		}
		return paths
	}
	t.Fatalf("no container %s", name)
	return nil
}

// containerArgs are the args of container name in spec.
func containerArgs(t *testing.T, spec map[string]any, name string) []string {
	t.Helper()
	for _, c := range list(spec["containers"]) {
		if c["name"] == name {
			var args []string
			for _, a := range c["args"].([]any) {
				args = append(args, a.(string))
			}
			return args
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

// wantMounted fails unless every path is a mount path or lies under one.
func wantMounted(t *testing.T, who string, mounts []string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if !slices.ContainsFunc(mounts, func(m string) bool { return p == m || strings.HasPrefix(p, m+"/") }) {
			t.Errorf("%s: %s is on no volume (mounts %v)", who, p, mounts)
		}
	}
}
