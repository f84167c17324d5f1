// Package conventions enforces repository-wide rules: one package doc per
// package, and one-way imports (cmd → server/agent → ca, issuer, attest,
// rotation, secrets → proto; issuer and ca know nothing of etcd or gRPC).
package conventions

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/signet-id/signet"

type pkg struct {
	ImportPath string
	Dir        string
	Doc        string
	Name       string
	Imports    []string
	Deps       []string
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
	cmd := exec.Command("go", "list", "-json", "-deps=false", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func TestEveryPackageHasADoc(t *testing.T) {
	for _, p := range listPackages(t) {
		if len(p.GoFiles) == 0 {
			continue
		}
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment", p.ImportPath)
		}
	}
}

func rel(path string) string { return strings.TrimPrefix(strings.TrimPrefix(path, module), "/") }

func under(path, prefix string) bool {
	r := rel(path)
	return r == prefix || strings.HasPrefix(r, prefix+"/")
}

func TestImportDirection(t *testing.T) {
	forbidden := []struct {
		from    string
		imports []string // module-relative prefixes or external import paths
		why     string
	}{
		{"issuer", []string{"go.etcd.io/", "google.golang.org/grpc", "server", "agent", "cmd", "cli"}, "issuer is pure: a signer and a clock"},
		{"ca", []string{"go.etcd.io/", "google.golang.org/grpc", "server", "agent", "cmd", "cli"}, "ca knows nothing of etcd or gRPC"},
		{"pq", []string{"go.etcd.io/", "google.golang.org/grpc", "server", "agent", "cmd", "cli", "ca", "issuer"}, "pq holds pure credential formats"},
		{"attest", []string{"server", "agent", "cmd", "cli"}, "attestors sit below the daemons"},
		{"rotation", []string{"server", "agent", "cmd", "cli"}, "rotation sits below the daemons"},
		{"secrets", []string{"server", "agent", "cmd", "cli"}, "secrets sits below the daemons"},
		{"proto", []string{"server", "agent", "cmd", "cli", "ca", "issuer"}, "proto is the bottom layer"},
		{"bundle", []string{"go.etcd.io/", "google.golang.org/grpc", "server", "agent", "cmd", "cli", "ca", "issuer"}, "bundle is a codec below the daemons"},
		{"tlspolicy", []string{"server", "agent", "cmd", "cli", "ca", "issuer", "attest", "rotation", "secrets", "proto", "pq", "config", "go.etcd.io/", "google.golang.org/grpc"}, "tlspolicy is a leaf"},
		{"internal", []string{"server", "agent", "cmd", "cli", "ca", "issuer", "attest", "rotation", "secrets", "go.etcd.io/", "google.golang.org/grpc"}, "internal holds leaf helpers"},
		{"server", []string{"agent", "cmd", "cli"}, "server and agent are independent daemons"},
		{"agent", []string{"server", "cmd", "cli"}, "server and agent are independent daemons"},
		{"privdir", []string{"server", "agent", "cmd", "cli", "ca", "issuer", "attest", "rotation", "secrets", "proto", "pq", "config", "go.etcd.io/", "google.golang.org/grpc"}, "privdir is a leaf: local file checks only"},
	}
	for _, p := range listPackages(t) {
		if strings.HasSuffix(p.ImportPath, "_test") {
			continue
		}
		for _, f := range forbidden {
			if !under(p.ImportPath, f.from) {
				continue
			}
			for _, imp := range p.Imports {
				for _, bad := range f.imports {
					hit := false
					if strings.Contains(bad, ".") {
						hit = strings.HasPrefix(imp, bad)
					} else {
						hit = strings.HasPrefix(imp, module+"/") && under(imp, bad)
					}
					if hit {
						t.Errorf("%s imports %s: %s", rel(p.ImportPath), imp, f.why)
					}
				}
			}
		}
		// Nothing imports cmd.
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module+"/cmd") {
				t.Errorf("%s imports %s: nothing imports cmd", rel(p.ImportPath), imp)
			}
		}
	}
}
