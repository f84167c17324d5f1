package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// walkTree calls fn for every command of signet's tree.
func walkTree(fn func(c *cobra.Command)) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		fn(c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(NewRootCommand())
}

// Every command that groups others refuses an unknown subcommand with
// exit code 2 and says which; none prints help and exits 0 (so
// `signet agent healthcheck` cannot pass as a probe).
func TestUnknownSubcommandEveryGroup(t *testing.T) {
	var groups []string
	walkTree(func(c *cobra.Command) {
		if c.HasSubCommands() && c.Name() != "help" {
			groups = append(groups, c.CommandPath())
		}
	})
	for _, want := range []string{"signet", "signet server", "signet agent", "signet verify", "signet completion", "signet entry"} {
		if !slices.Contains(groups, want) {
			t.Errorf("%q is not a group in the tree %q", want, groups)
		}
	}
	for _, g := range groups {
		args := append(strings.Fields(g)[1:], "bogus")
		code, out, errOut := run(t, args...)
		want := `unknown command "bogus" for "` + g + `"`
		if code != 2 || out != "" || !strings.Contains(errOut, want) || !strings.Contains(errOut, "--help") {
			t.Errorf("signet %v: exit %d, stdout %q, stderr %q; want exit 2 and %q", args, code, out, errOut, want)
		}
	}
	// agent healthcheck exists (agent_healthcheck.go); with no agent on
	// the socket it fails.
	if code, _, errOut := run(t, "agent", "healthcheck", "--socket-path", filepath.Join(t.TempDir(), "none.sock")); code != 1 || !strings.Contains(errOut, "agent is unhealthy") {
		t.Errorf("agent healthcheck without an agent: exit %d, %q", code, errOut)
	}
	if code, out, _ := run(t, "server"); code != 0 || !strings.Contains(out, "validate") {
		t.Errorf("server alone prints its help: exit %d, %q", code, out)
	}
}

// pflag takes a back-quoted word in a flag's usage as its value name, so
// a back-quoted phrase shows as `--join-token signet token generate`.
// Every back-quote in a usage must be a value name.
func TestFlagValueNames(t *testing.T) {
	valueName := regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]*$`)
	n := 0
	walkTree(func(c *cobra.Command) {
		visit := func(f *pflag.Flag) {
			n++
			if !strings.Contains(f.Usage, "`") {
				return
			}
			name, _ := pflag.UnquoteUsage(f)
			if !valueName.MatchString(name) || strings.Count(f.Usage, "`") != 2 {
				t.Errorf("%s --%s: usage %q renders the value name %q; back-quote one word (the value's name) or use ' quotes", c.CommandPath(), f.Name, f.Usage, name)
			}
		}
		c.LocalFlags().VisitAll(visit)
	})
	if n < 100 {
		t.Fatalf("visited only %d flags", n)
	}
}

func TestSpireArgs(t *testing.T) {
	root := NewRootCommand()
	tests := []struct{ in, want string }{
		{"entry create -parentID P -spiffeID S -selector unix:uid:0 -socketPath /s -x509SVIDTTL 60 -dns a -ttl 1",
			"entry create --parentID P --spiffeID S --selector unix:uid:0 --socketPath /s --x509SVIDTTL 60 --dns a -ttl 1"},
		{"token generate -spiffeID S -ttl 600 -output json", "token generate --spiffeID S --ttl 600 --output json"},
		{"server run -config c -expandEnv -logLevel debug", "server run --config c --expandEnv --logLevel debug"},
		{"agent run -joinToken T -trustDomain example.org -trustBundle b.pem", "agent run --joinToken T --trustDomain example.org --trustBundle b.pem"},
		{"ca taint -x509 -authorityID A", "ca taint --x509 --authorityID A"},
		// A value that starts with a dash is a value; -o is a shorthand;
		// unknown words and everything after -- are left alone.
		{"entry create --hint -dns -o json -bogus x -- -spiffeID", "entry create --hint -dns -o json -bogus x -- -spiffeID"},
		{"entry create -hint=-dns", "entry create --hint=-dns"},
	}
	for _, tt := range tests {
		if got := strings.Join(spireArgs(root, strings.Fields(tt.in)), " "); got != tt.want {
			t.Errorf("spireArgs(%s)\n got %s\nwant %s", tt.in, got, tt.want)
		}
	}
}

// spire-server's and spire-agent's single-dash flags run through Main.
func TestSpireFlagsThroughMain(t *testing.T) {
	p := spireConf(t, "agent.conf")
	if code, out, errOut := run(t, "agent", "validate", "-config", p, "-expandEnv"); code != 0 || out != "configuration is valid\n" {
		t.Fatalf("agent validate -config -expandEnv: exit %d, %q, %q", code, out, errOut)
	}
	for _, tt := range []struct{ args, want string }{
		{"agent run -serverPort 8081", "unknown flag -serverPort: Signet takes the port with the host: --server-address host:port"},
		{"server run -bogusFlag", "unknown flag -bogusFlag: signet server run has no --bogus-flag (see `signet server run --help`)"},
	} {
		if code, out, errOut := run(t, strings.Fields(tt.args)...); code != 2 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, %q, %q; want %q", tt.args, code, out, errOut, tt.want)
		}
	}
	code, out, errOut := run(t, "entry", "create", "-parentID", "spiffe://example.org/spire/agent/x", "-spiffeID", "spiffe://example.org/web",
		"-selector", "unix:uid:1000", "-socketPath", "/nonexistent/api.sock")
	if code != 1 || out != "" || !strings.Contains(errOut, "/nonexistent/api.sock") {
		t.Fatalf("entry create with spire-server flags: exit %d, %q, %q", code, out, errOut)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, errOut := run(t, args...)
		if code != 0 || !regexp.MustCompile(`^signet \S+\ncommit: .+\ngo: go1\.\d+`).MatchString(out) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	b := buildInfo{Version: "v1.2.3", Commit: "abc123", CommitTime: "2026-12-01T00:00:00Z", Modified: true, GoVersion: "go1.26.8"}
	if got, want := b.String(), "signet v1.2.3\ncommit: abc123 (2026-12-01T00:00:00Z), modified\ngo: go1.26.8\n"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// `signet man` writes one page per command, each naming every flag.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := run(t, "man", "--dir", dir)
	if code != 0 || !strings.HasPrefix(out, "Wrote ") {
		t.Fatalf("man: exit %d, %q, %q", code, out, errOut)
	}
	n := 0
	walkTree(func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || strings.HasPrefix(c.Name(), "__") {
			return
		}
		n++
		name := strings.ReplaceAll(c.CommandPath(), " ", "-")
		page, err := os.ReadFile(filepath.Join(dir, name+".1"))
		if err != nil {
			t.Error(err)
			return
		}
		if !strings.HasPrefix(string(page), ".TH \""+strings.ToUpper(name)+"\" 1") {
			t.Errorf("%s: no .TH header", name)
		}
		c.NonInheritedFlags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden && !strings.Contains(string(page), `\fB\-\-`+strings.ReplaceAll(f.Name, "-", `\-`)+`\fR`) {
				t.Errorf("%s: flag --%s missing", name, f.Name)
			}
		})
	})
	if want := fmt.Sprintf("Wrote %d man pages to %s\n", n, dir); out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if code, _, errOut := run(t, "man"); code != 2 || !strings.Contains(errOut, "--dir is required") {
		t.Errorf("man without --dir: exit %d, %q", code, errOut)
	}
}
