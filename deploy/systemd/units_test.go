// Package systemd holds no code: its tests check the unit files in this
// directory with the tools that consume them (systemd-analyze verify and
// security, systemd-sysusers), check that their directory modes pass
// Signet's own directory checks, that their ExecStart lines are commands
// the signet CLI accepts with the bare-metal example configurations, and
// that the capability the agent unit grants is the one the unix workload
// attestor needs (by attesting another user's process with and without it).
package systemd

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// unit is a parsed unit file: section → key → assignments in order.
type unit map[string]map[string][]string

// parseUnit reads a unit file (or a unit followed by drop-ins): comments,
// sections and key=value lines; no line continuations are used here.
func parseUnit(t *testing.T, paths ...string) unit {
	t.Helper()
	u := unit{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		section := ""
		sc := bufio.NewScanner(bytes.NewReader(data))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			switch {
			case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
			case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
				section = line[1 : len(line)-1]
				if u[section] == nil {
					u[section] = map[string][]string{}
				}
			default:
				k, v, ok := strings.Cut(line, "=")
				if !ok || section == "" || strings.HasSuffix(line, `\`) {
					t.Fatalf("%s:%d: not a key=value line in a section: %q", p, n, line)
				}
				k = strings.TrimSpace(k)
				u[section][k] = append(u[section][k], strings.TrimSpace(v))
			}
		}
	}
	return u
}

// last is the effective value of a single-valued setting ("" if unset).
func (u unit) last(key string) string {
	vs := u["Service"][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// units are the unit files, with the instance name their tests use.
var units = []struct {
	file, daemon, instance string
	dropIns                []string
	maxExposure            float64
}{
	{"signet-server.service", "server", "", nil, 1.5},
	{"signet-server@.service", "server", "blue", nil, 1.5},
	{"signet-agent.service", "agent", "", nil, 2.0},
	{"signet-agent@.service", "agent", "blue", nil, 2.0},
	{"signet-agent.service", "agent", "", []string{"signet-agent-tpm.conf"}, 2.5},
}

// name is the unit name systemd loads: the file, or its instance.
func name(file, instance string) string {
	if instance == "" {
		return file
	}
	return strings.Replace(file, "@.", "@"+instance+".", 1)
}

// lookTool finds a systemd tool. Without it the test is skipped, unless
// CI=true: then it fails (scripts/install-debs.sh installs package systemd).
func lookTool(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		msg := fmt.Sprintf("%s not found (%v): install Debian package systemd (scripts/install-debs.sh)", tool, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// signetBinary builds cmd/signet once for the package's tests; verify
// checks that ExecStart names an executable, and this is the real one.
func signetBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "signet-systemd-test-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, "signet"), "github.com/signet-id/signet/cmd/signet")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/signet: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "signet")
}

// installed writes the unit (and its drop-ins appended, as systemd merges
// them) into a temporary directory under the name systemd loads, with
// ExecStart's /usr/local/bin/signet replaced by exe.
func installed(t *testing.T, file, instance, exe string, dropIns ...string) string {
	t.Helper()
	var buf bytes.Buffer
	for _, p := range append([]string{file}, dropIns...) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(data)
		buf.WriteByte('\n')
	}
	src := buf.String()
	if !strings.Contains(src, "ExecStart=/usr/local/bin/signet ") {
		t.Fatalf("%s: ExecStart does not run /usr/local/bin/signet", file)
	}
	src = strings.ReplaceAll(src, "ExecStart=/usr/local/bin/signet ", "ExecStart="+exe+" ")
	p := filepath.Join(t.TempDir(), name(file, instance))
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMain(m *testing.M) {
	if helperMain() {
		return
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}
