// Command bench runs Signet and SPIRE v1.13.3 side by side on this machine,
// with equivalent settings, and reports per scenario Signet's figure,
// SPIRE's figure and their ratio: X.509-SVID issuance throughput, Workload
// API latency, propagation of new entries, scale (sync time and memory) and
// forced rotation after tainting the X.509 authority. It writes a Markdown
// report and a PNG chart.
//
//	cd conformance/bench && go run . [-smoke] [-out ../../docs/benchmarks.md] [-png ../../docs/benchmarks.png]
//
// The harness is its own module (conformance/bench/go.mod), so its chart
// library stays out of the main module's go.mod; run it from its directory.
// SPIRE's binaries come from SIGNET_SPIRE_DIR or scripts/install-spire.sh;
// Signet's binary is built from ./cmd/signet. Both run as separate processes
// and are driven only through public APIs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	var opt options
	var scale, only string
	flag.BoolVar(&opt.smoke, "smoke", false, "tiny counts and short runs (seconds), to check the harness")
	flag.StringVar(&opt.out, "out", "", "write the Markdown report here (default: stdout only)")
	flag.StringVar(&opt.png, "png", "", "write the PNG chart here")
	flag.StringVar(&opt.spireDir, "spire-dir", os.Getenv("SIGNET_SPIRE_DIR"), "directory with spire-server and spire-agent v1.13.3 (default: scripts/install-spire.sh)")
	flag.StringVar(&opt.signetBin, "signet-bin", "", "prebuilt signet binary (default: go build ./cmd/signet)")
	flag.StringVar(&scale, "scale", "", "entry counts for the scale scenario, comma separated (default 10000,100000; smoke 100,1000)")
	flag.StringVar(&only, "scenarios", "", "run only these scenarios, comma separated (1-5)")
	flag.IntVar(&opt.regConc, "reg-conc", 0, "BatchCreateEntry calls in flight while registering the scale scenario's entries (default 4)")
	flag.StringVar(&opt.systems, "systems", "Signet,SPIRE", "systems to run (for trying the harness; ratios need both)")
	flag.Int64Var(&opt.seed, "seed", 1, "seed of the propagation scenario's random delays")
	flag.Parse()
	var err error
	if opt.scale, err = parseInts(scale); err != nil {
		fatal(fmt.Errorf("bench: -scale: %w", err))
	}
	ids, err := parseInts(only)
	if err != nil {
		fatal(fmt.Errorf("bench: -scenarios: %w", err))
	}
	if len(ids) > 0 {
		opt.only = map[int]bool{}
		for _, id := range ids {
			opt.only[id] = true
		}
	}
	opt.command = "(cd conformance/bench && " + strings.Join(append([]string{"go run ."}, os.Args[1:]...), " ") + ")"
	opt.log = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, opt)
	if err != nil {
		fatal(err)
	}
	if opt.out == "" {
		if err := rep.markdown(os.Stdout, ""); err != nil {
			fatal(err)
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func parseInts(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("not a positive number: %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// params are the counts and bounds of one mode.
type params struct {
	mintConc   []int
	mintDur    time.Duration
	mintMax    int64
	mintRounds int
	fetchConc  []int
	fetchCalls map[int]int
	fetchBound time.Duration
	propN      int
	propJitter time.Duration
	scale      []int
	syncBound  time.Duration
	rotBound   time.Duration
	settle     time.Duration
	budget     time.Duration
	regConc    int
	regBudget  time.Duration
	regBound   time.Duration
}

func paramsFor(smoke bool) params {
	if smoke {
		return params{
			mintConc: []int{1, 4, 16, 64}, mintDur: 300 * time.Millisecond, mintMax: 200, mintRounds: 1,
			fetchConc: []int{1, 10, 50}, fetchCalls: map[int]int{1: 20, 10: 3, 50: 2}, fetchBound: 30 * time.Second,
			propN: 2, propJitter: 500 * time.Millisecond,
			scale: []int{100, 1000}, syncBound: 2 * time.Minute,
			rotBound: 90 * time.Second, settle: time.Second, budget: 8 * time.Minute, regConc: 4, regBudget: 2 * time.Minute, regBound: 3 * time.Minute,
		}
	}
	return params{
		mintConc: []int{1, 4, 16, 64}, mintDur: 3 * time.Second, mintMax: 1_000_000, mintRounds: 3,
		fetchConc: []int{1, 100, 1000}, fetchCalls: map[int]int{1: 1000, 100: 20, 1000: 4}, fetchBound: 90 * time.Second,
		propN: 12, propJitter: 5 * time.Second,
		scale: []int{10_000, 100_000}, syncBound: 2 * time.Minute,
		rotBound: 3 * time.Minute, settle: 3 * time.Second, budget: 40 * time.Minute, regConc: 4, regBudget: 210 * time.Second, regBound: 5 * time.Minute,
	}
}
