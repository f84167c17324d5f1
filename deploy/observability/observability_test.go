// Package observability checks the Prometheus rules and the Grafana
// dashboard in deploy/observability: with the real promtool
// (scripts/install-promtool.sh), and against the metrics a real Signet
// server and agent export (live_test.go). It holds no code.
package observability

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/signet-id/signet/conformance/tooltest"
)

const (
	rulesFile     = "prometheus/rules.yml"
	rulesTestFile = "prometheus/rules_test.yml"
	dashboardFile = "grafana/signet.json"
)

// promtool is built by scripts/install-promtool.sh; scripts/test.sh
// exports SIGNET_PROMTOOL_BIN. Under CI=true a missing binary fails the
// tests.
var promtool = tooltest.Tool{Name: "promtool", Env: "SIGNET_PROMTOOL_BIN", Script: "install-promtool.sh", Build: true}

func runPromtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(promtool.Path(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtoolCheckRules(t *testing.T) {
	out := runPromtool(t, ".", "check", "rules", rulesFile)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules did not report SUCCESS:\n%s", out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	out := runPromtool(t, "prometheus", "test", "rules", filepath.Base(rulesTestFile))
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules did not report SUCCESS:\n%s", out)
	}
}

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Record string `json:"record"`
			Alert  string `json:"alert"`
			Expr   string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	var rf ruleFile
	readYAML(t, rulesFile, &rf)
	if len(rf.Groups) == 0 {
		t.Fatalf("%s: no rule groups", rulesFile)
	}
	return rf
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestEveryAlertTestedFiringAndNot: rules_test.yml evaluates every alert
// of rules.yml at least once expecting it to fire and once expecting it
// not to.
func TestEveryAlertTestedFiringAndNot(t *testing.T) {
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string            `json:"alertname"`
				ExpAlerts []json.RawMessage `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	readYAML(t, rulesTestFile, &tests)
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	n := 0
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if !firing[r.Alert] {
				t.Errorf("alert %s: no test expects it to fire", r.Alert)
			}
			if !quiet[r.Alert] {
				t.Errorf("alert %s: no test expects it not to fire", r.Alert)
			}
		}
	}
	if n == 0 {
		t.Fatalf("%s defines no alerts", rulesFile)
	}
}

// dashboard is the part of the Grafana dashboard model the tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Definition string          `json:"definition"`
			Datasource json.RawMessage `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// dashboardExprs returns the PromQL of every panel target and query
// variable, with the dashboard's variables replaced by what "All" selects.
func dashboardExprs(d dashboard) []string {
	vars := strings.NewReplacer(`"$server_job"`, `".+"`, `"$agent_job"`, `".+"`)
	var out []string
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			out = append(out, vars.Replace(tg.Expr))
		}
	}
	return out
}

// TestDashboard: the dashboard parses, every panel has a unique ID and
// queries the dashboard's data source variable, every recording rule it
// reads is defined in rules.yml, and promtool's PromQL parser accepts
// every query (as the expression of a throwaway recording rule).
func TestDashboard(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Fatalf("dashboard uid %q title %q: both are required", d.UID, d.Title)
	}
	ids := map[int]string{}
	queries := 0
	for _, p := range allPanels(d.Panels) {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			continue
		}
		if !strings.Contains(string(p.Datasource), "${datasource}") {
			t.Errorf("panel %q: data source %s, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: empty query", p.Title)
			}
			queries++
		}
	}
	if queries == 0 {
		t.Fatal("dashboard has no queries")
	}

	recorded := map[string]bool{}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	exprs := dashboardExprs(d)
	for _, name := range recordingNames(exprs) {
		if !recorded[name] {
			t.Errorf("dashboard reads %s, which rules.yml does not record", name)
		}
	}

	var src strings.Builder
	src.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		q, err := json.Marshal(e) // a JSON string is a YAML scalar
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&src, "      - record: dashboard:query_%d\n        expr: %s\n", i, q)
	}
	f := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(f, []byte(src.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, ".", "check", "rules", f)
}

var (
	metricName    = regexp.MustCompile(`signet_[a-z0-9_]+`)
	recordingName = regexp.MustCompile(`signet:[a-z0-9_:]+`)
)

// metricNames returns the Signet metric families the expressions read:
// histogram series (_bucket, _sum, _count) name their family.
func metricNames(exprs []string) []string {
	set := map[string]bool{}
	for _, e := range exprs {
		for _, m := range metricName.FindAllString(e, -1) {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				m = strings.TrimSuffix(m, s)
			}
			set[m] = true
		}
	}
	return sorted(set)
}

func recordingNames(exprs []string) []string {
	set := map[string]bool{}
	for _, e := range exprs {
		for _, m := range recordingName.FindAllString(e, -1) {
			set[m] = true
		}
	}
	return sorted(set)
}

func sorted(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// referencedMetrics returns every Signet metric family that rules.yml or
// the dashboard reads.
func referencedMetrics(t *testing.T) []string {
	t.Helper()
	var exprs []string
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	d := readDashboard(t)
	exprs = append(exprs, dashboardExprs(d)...)
	for _, v := range d.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	return metricNames(exprs)
}

func TestMetricNames(t *testing.T) {
	got := metricNames([]string{
		`histogram_quantile(0.99, sum by (le) (rate(signet_agent_sync_seconds_bucket[5m])))`,
		`signet:agent_svid_expiry_seconds:min < 300 or signet_etcd_db_quota_ratio > 0.8`,
	})
	if want := []string{"signet_agent_sync_seconds", "signet_etcd_db_quota_ratio"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("metricNames = %v, want %v", got, want)
	}
}
