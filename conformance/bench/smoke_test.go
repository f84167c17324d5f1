package main

import (
	"context"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSmoke runs the whole harness with tiny counts against real Signet and
// SPIRE processes and checks that it produced a well-formed row for both
// systems in every scenario. It asserts no timings.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers and agents")
	}
	out := t.TempDir()
	opt := options{
		smoke:   true,
		out:     filepath.Join(out, "benchmarks.md"),
		png:     filepath.Join(out, "benchmarks.png"),
		command: "(cd conformance/bench && go test -run TestSmoke)",
		seed:    1,
	}
	if _, _, err := spireBinaries(os.Getenv("SIGNET_SPIRE_DIR")); errors.Is(err, errNoSPIRE) {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	opt.spireDir = os.Getenv("SIGNET_SPIRE_DIR")
	if testing.Verbose() {
		opt.log = os.Stderr
	}
	rep, err := run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}

	perScenario := map[int]int{}
	for _, r := range rep.Rows {
		perScenario[r.Scenario]++
		if r.Metric == "" || r.Unit == "" {
			t.Errorf("scenario %d: row without metric or unit: %+v", r.Scenario, r)
		}
		for name, v := range map[string]value{"Signet": r.Signet, "SPIRE": r.SPIRE} {
			switch {
			case v.OK && !(v.V > 0):
				t.Errorf("%s: %s = %v, want a positive figure", r.Metric, name, v.V)
			case !v.OK && v.Note == "":
				t.Errorf("%s: %s has neither a figure nor a reason", r.Metric, name)
			case !v.OK && name == "SPIRE":
				// SPIRE v1.13.3 supports every scenario.
				t.Errorf("%s: SPIRE: %s", r.Metric, v.Note)
			case !v.OK && !strings.HasPrefix(v.Note, "not available"):
				t.Errorf("%s: Signet: %s", r.Metric, v.Note)
			case !v.OK:
				t.Logf("%s: Signet: %s", r.Metric, v.Note)
			}
		}
		if r.Scenario == 1 && (r.Ceiling == nil || !r.Ceiling.OK || !(r.Ceiling.V > 0)) {
			t.Errorf("%s: no raw signing ceiling", r.Metric)
		}
	}
	// Rows per scenario: issuance 2 APIs x 4 levels; latency 3 calls x 3
	// levels x p50/p99; propagation p50/p99; scale 2 sizes x 6; rotation 1.
	want := map[int]int{1: 8, 2: 18, 3: 2, 4: 12, 5: 1}
	for n, w := range want {
		if perScenario[n] != w {
			t.Errorf("scenario %d: %d rows, want %d", n, perScenario[n], w)
		}
	}
	if len(rep.Scenarios) != 5 {
		t.Errorf("report has %d scenario sections, want 5", len(rep.Scenarios))
	}

	md, err := os.ReadFile(opt.out)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"## 1. ", "## 5. ", "| metric | unit | Signet | SPIRE | Signet/SPIRE |", "Command: `" + opt.command + "`", "benchmarks.png"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("report lacks %q", s)
		}
	}
	for _, line := range strings.Split(string(md), "\n") {
		if strings.HasPrefix(line, "| ") && strings.Count(line, "|") != 7 && strings.Count(line, "|") != 10 {
			t.Errorf("malformed table line: %s", line)
		}
	}
	f, err := os.Open(opt.png)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("chart: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 300 {
		t.Errorf("chart is %v, too small", b)
	}
}
