package tooltest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Tool is an external binary that one of the repository's install scripts
// builds into the per-version cache (scripts/install-vault.sh,
// scripts/install-kube-apiserver.sh, ...).
type Tool struct {
	// Name names the tool in messages, e.g. "kube-apiserver".
	Name string
	// Env is the variable that may name the binary, e.g.
	// SIGNET_KUBE_APISERVER_BIN (scripts/test.sh exports it).
	Env string
	// Script is the install script's file name under scripts/. It prints
	// the binary's path; with --cached it only looks for an existing build.
	Script string
	// Build lets a test outside CI run the script to build a missing
	// binary; without it such a test is skipped. Under CI=true a missing
	// binary always fails the test.
	Build bool
}

// Path returns the binary's path: $Env, else the script's cached build,
// else (Build, outside CI) a fresh build.
func (tl Tool) Path(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(tl.Env); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", tl.Env, p, err)
		}
		return p
	}
	script, err := FindScript(tl.Script)
	if err != nil {
		t.Fatalf("%s: %v", tl.Name, err)
	}
	if out, err := exec.Command("bash", script, "--cached").Output(); err == nil {
		if p := strings.TrimSpace(string(out)); p != "" {
			return p
		}
	}
	msg := fmt.Sprintf("%s is not built: set %s or run scripts/%s", tl.Name, tl.Env, tl.Script)
	switch {
	case os.Getenv("CI") == "true":
		t.Fatal(msg)
	case !tl.Build:
		t.Skip(msg)
	}
	t.Logf("building %s with %s (a few minutes)", tl.Name, script)
	var stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// FindScript returns the path of scripts/<name> in the repository that
// holds the working directory.
func FindScript(name string) (string, error) {
	p, err := findUp(filepath.Join("scripts", name))
	if err != nil {
		return "", fmt.Errorf("tooltest: scripts/%s not found above the working directory", name)
	}
	return p, nil
}

// findUp returns rel joined to the nearest directory, from the working
// directory up, where it names a file.
func findUp(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, rel)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// Buffer collects a child process's output: safe for concurrent writes
// and reads.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
