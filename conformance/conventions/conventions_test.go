// Package conventions enforces repository-wide rules: one package doc per
// package; one-way imports (cmd → cli → server/agent → ca, issuer, attest,
// rotation, secrets → proto; issuer and ca know nothing of etcd or gRPC),
// checked over transitive dependencies; no test helper in production code;
// and no hand-written non-test file over 600 lines outside conformance/.
package conventions

import (
	"bufio"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

const module = "github.com/signet-id/signet"

type pkg struct {
	ImportPath string
	Dir        string
	Doc        string
	Name       string
	Standard   bool
	Imports    []string
	Deps       []string
	GoFiles    []string
}

// graph is the module's packages and every package they depend on, as
// `go list -deps` reports them (non-test imports only).
type graph struct {
	root  string
	mine  []pkg          // the module's own packages, in go list order
	byImp map[string]pkg // every package in the build graph
}

var (
	loadOnce sync.Once
	loaded   graph
	loadErr  error
)

func repoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..")
}

func load(t *testing.T) graph {
	t.Helper()
	loadOnce.Do(func() {
		root := repoRoot()
		cmd := exec.Command("go", "list", "-json", "-deps", "./...")
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			loadErr = err
			return
		}
		g := graph{root: root, byImp: map[string]pkg{}}
		dec := json.NewDecoder(strings.NewReader(string(out)))
		for dec.More() {
			var p pkg
			if err := dec.Decode(&p); err != nil {
				loadErr = err
				return
			}
			g.byImp[p.ImportPath] = p
			if mine(p.ImportPath) {
				g.mine = append(g.mine, p)
			}
		}
		loaded = g
	})
	if loadErr != nil {
		t.Fatalf("go list: %v", loadErr)
	}
	if len(loaded.mine) < 10 {
		t.Fatalf("go list found only %d packages of %s", len(loaded.mine), module)
	}
	return loaded
}

func mine(path string) bool { return path == module || strings.HasPrefix(path, module+"/") }

func rel(path string) string { return strings.TrimPrefix(strings.TrimPrefix(path, module), "/") }

func under(path, prefix string) bool {
	r := rel(path)
	return r == prefix || strings.HasPrefix(r, prefix+"/")
}

// matches reports whether import path imp is covered by a rule's entry:
// an external path prefix (it has a dot, "go.etcd.io/") or a
// module-relative package prefix ("server").
func matches(imp, entry string) bool {
	if strings.Contains(entry, ".") {
		return strings.HasPrefix(imp, entry)
	}
	return mine(imp) && under(imp, entry)
}

// chain returns the shortest import chain from one package to another, as
// "a → b → c", for the error message.
func (g graph) chain(from, to string) string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var path []string
			for p := to; p != ""; p = prev[p] {
				path = append(path, rel(p))
			}
			slices.Reverse(path)
			return strings.Join(path, " → ")
		}
		for _, imp := range g.byImp[cur].Imports {
			if _, seen := prev[imp]; !seen {
				prev[imp] = cur
				queue = append(queue, imp)
			}
		}
	}
	return rel(from) + " → … → " + rel(to)
}

func TestEveryPackageHasADoc(t *testing.T) {
	for _, p := range load(t).mine {
		if len(p.GoFiles) == 0 {
			continue
		}
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment", p.ImportPath)
		}
	}
}

type rule struct {
	from    string   // module-relative package prefix
	imports []string // module-relative prefixes or external import path prefixes
	why     string
}

var importRules = []rule{
	{"issuer", []string{"go.etcd.io/", "google.golang.org/grpc", "server", "agent", "cmd", "cli"}, "issuer is pure: a signer and a clock"},
	{"ca", []string{"go.etcd.io/", "google.golang.org/grpc", "server", "agent", "cmd", "cli"}, "ca knows nothing of etcd or gRPC"},
	{"pq", []string{"go.etcd.io/", "google.golang.org/grpc", "server", "agent", "cmd", "cli", "ca", "issuer"}, "pq holds pure credential formats"},
	{"attest", []string{"server", "agent", "cmd", "cli"}, "attestors sit below the daemons"},
	{"rotation", []string{"server", "agent", "cmd", "cli"}, "rotation sits below the daemons"},
	{"secrets", []string{"server", "agent", "cmd", "cli"}, "secrets sits below the daemons"},
	{"proto", []string{"server", "agent", "cmd", "cli", "ca", "issuer"}, "proto is the bottom layer"},
	{"bundle", []string{"go.etcd.io/", "google.golang.org/grpc", "server", "agent", "cmd", "cli", "ca", "issuer"}, "bundle is a codec below the daemons"},
	{"spireid", []string{module + "/", "google.golang.org/grpc", "go.etcd.io/"}, "spireid is a leaf: std and go-spiffe's spiffeid only"},
	{"tlspolicy", []string{"server", "agent", "cmd", "cli", "ca", "issuer", "attest", "rotation", "secrets", "proto", "pq", "config", "go.etcd.io/", "google.golang.org/grpc"}, "tlspolicy is a leaf"},
	{"internal", []string{"server", "agent", "cmd", "cli", "ca", "issuer", "attest", "rotation", "secrets", "go.etcd.io/", "google.golang.org/grpc"}, "internal holds leaf helpers"},
	{"server", []string{"agent", "cmd", "cli"}, "server and agent are independent daemons"},
	{"agent", []string{"server", "cmd", "cli"}, "server and agent are independent daemons"},
	{"k8s", []string{"server", "agent", "cmd", "cli", "go.etcd.io/"}, "the k8s controller reaches a server only through its admin API"},
	{"cli", []string{"cmd"}, "cli sits below cmd: cmd only wires cli into main"},
	{"config", []string{"server", "agent", "cli", "cmd"}, "config is read by the daemons and the CLI, not the other way round"},
	{"privdir", []string{"server", "agent", "cmd", "cli", "ca", "issuer", "attest", "rotation", "secrets", "proto", "pq", "config", "go.etcd.io/", "google.golang.org/grpc"}, "privdir is a leaf: local file checks only"},
	{"clock", []string{"server", "agent", "cmd", "cli", "ca", "issuer", "attest", "rotation", "secrets", "proto", "pq", "config", "privdir", "github.com/spiffe/", "github.com/prometheus/", "golang.org/", "google.golang.org/", "go.etcd.io/"}, "clock is a leaf: the standard library only"},
	{"", []string{"cmd"}, "nothing imports cmd"},
}

func TestImportDirection(t *testing.T) {
	g := load(t)
	checkImportRules(t, g, importRules)
}

func checkImportRules(t *testing.T, g graph, rules []rule) {
	t.Helper()
	for _, r := range rules {
		for _, p := range g.mine {
			if r.from != "" && !under(p.ImportPath, r.from) {
				continue
			}
			for _, bad := range r.imports {
				if r.from == "" && under(p.ImportPath, bad) {
					continue // "nothing imports cmd": cmd's own packages may
				}
				// One error per forbidden entry: the first dependency it
				// matches, with the chain that pulls it in.
				for _, dep := range p.Deps {
					if dep != p.ImportPath && matches(dep, bad) {
						t.Errorf("%s imports %s (%s): %s", rel(p.ImportPath), rel(dep), g.chain(p.ImportPath, dep), r.why)
						break
					}
				}
			}
		}
	}
}

// TestImportRulesAreLive keeps the rule list true: a rule whose package
// prefix matches no package, or that forbids an import found nowhere in the
// build graph, is stale and must be updated or removed.
func TestImportRulesAreLive(t *testing.T) {
	checkRulesLive(t, load(t), importRules)
}

func checkRulesLive(t *testing.T, g graph, rules []rule) {
	t.Helper()
	for _, r := range rules {
		if r.from != "" && !slices.ContainsFunc(g.mine, func(p pkg) bool { return under(p.ImportPath, r.from) }) {
			t.Errorf("stale rule: no package under %q", r.from)
		}
		for _, bad := range r.imports {
			found := false
			for imp := range g.byImp {
				if matches(imp, bad) {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("stale rule %q: %q matches no package in the build graph", r.from, bad)
			}
		}
	}
}

// testHelper reports whether a module package exists only to help tests:
// its name ends in "test" (etcdtest, pqtest, …; "attest", the attestation
// methods' home, is a word, not a helper) or starts with "fake"
// (fakeclock), or it lives under conformance/.
func testHelper(path string) bool {
	if !mine(path) {
		return false
	}
	base := path[strings.LastIndex(path, "/")+1:]
	return (strings.HasSuffix(base, "test") && base != "attest") || strings.HasPrefix(base, "fake") || under(path, "conformance")
}

// TestProductionCodeImportsNoTestHelper walks the non-test dependencies of
// every package that is itself neither a test helper nor under
// conformance/.
func TestProductionCodeImportsNoTestHelper(t *testing.T) {
	g := load(t)
	helpers := 0
	for _, p := range g.mine {
		if testHelper(p.ImportPath) {
			helpers++
			continue
		}
		for _, dep := range p.Deps {
			if testHelper(dep) {
				t.Errorf("%s imports the test helper %s (%s): production code must not", rel(p.ImportPath), rel(dep), g.chain(p.ImportPath, dep))
			}
		}
	}
	if helpers == 0 {
		t.Error("stale rule: no test helper package found")
	}
}

const maxLines = 600

// oversized lists hand-written files allowed over maxLines while another
// change splits them. An entry that is no longer over the limit fails the
// test, so the list stays true.
var oversized = map[string]string{}

var generated = regexp.MustCompile(`^// Code generated .* DO NOT EDIT\.$`)

// TestNoLongFiles: no hand-written non-test .go file outside conformance/
// is over 600 lines. Generated files (the "Code generated … DO NOT EDIT."
// header) are skipped.
func TestNoLongFiles(t *testing.T) {
	checkLongFiles(t, repoRoot(), oversized)
}

func checkLongFiles(t *testing.T, root string, allowed map[string]string) {
	t.Helper()
	seen := map[string]bool{}
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			r, _ := filepath.Rel(root, path)
			if r != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor" || filepath.ToSlash(r) == "conformance") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		n, gen, err := countLines(path)
		if err != nil {
			return err
		}
		if gen {
			return nil
		}
		files++
		r, _ := filepath.Rel(root, path)
		r = filepath.ToSlash(r)
		if _, ok := allowed[r]; ok {
			seen[r] = true
			if n <= maxLines {
				t.Errorf("%s is %d lines now: remove it from the oversized list", r, n)
			}
			return nil
		}
		if n > maxLines {
			t.Errorf("%s is %d lines (limit %d): split it by noun", r, n, maxLines)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 10 {
		t.Fatalf("found only %d hand-written files under %s", files, root)
	}
	for f, why := range allowed {
		if !seen[f] {
			t.Errorf("oversized list names %s (%s), which is not a hand-written file any more", f, why)
		}
	}
}

// countLines returns the file's line count and whether it carries the
// generated-code header before its package clause.
func countLines(path string) (n int, gen bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	header := true
	for sc.Scan() {
		n++
		line := sc.Text()
		if header {
			if generated.MatchString(line) {
				gen = true
			}
			if strings.HasPrefix(line, "package ") {
				header = false
			}
		}
	}
	return n, gen, sc.Err()
}
