package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// options configure one harness run.
type options struct {
	smoke     bool
	out, png  string
	spireDir  string
	signetBin string
	scale     []int
	only      map[int]bool
	seed      int64
	regConc   int
	systems   string
	command   string
	log       io.Writer
}

// harness holds one run's state.
type harness struct {
	opt   options
	p     params
	rep   *report
	root  string // short temporary directory for data and sockets
	uid   int
	sys   []*system
	pairs map[string]*pair
	logw  io.Writer
}

// pair is one system's long-lived server and agent, with a workload entry
// for the harness's own uid.
type pair struct {
	sys      *system
	srv      *server
	ag       *agent
	err      error // why the pair could not start
	workload spiffeid.ID
	propIDs  []spiffeid.ID
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.logw, "bench: "+format+"\n", args...)
}

func (h *harness) enabled(n int) bool { return h.opt.only == nil || h.opt.only[n] }

// run executes the scenarios and writes the report files.
func run(ctx context.Context, opt options) (*report, error) {
	start := time.Now()
	if opt.log == nil {
		opt.log = io.Discard
	}
	h := &harness{opt: opt, p: paramsFor(opt.smoke), uid: os.Getuid(), pairs: map[string]*pair{}, logw: opt.log}
	if len(opt.scale) > 0 {
		h.p.scale = opt.scale
	}
	if opt.regConc > 0 {
		h.p.regConc = opt.regConc
	}
	ctx, cancel := context.WithTimeout(ctx, h.p.budget)
	defer cancel()
	mode := "full"
	if opt.smoke {
		mode = "smoke (tiny counts: checks the harness, not a measurement)"
	}
	startLoad := loadAverage()
	h.rep = &report{Command: opt.command, Date: start.UTC().Format("2006-01-02 15:04 MST"), Mode: mode}

	root, err := os.MkdirTemp("", "sgb")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	h.root = root
	defer os.RemoveAll(root)

	spireServer, spireAgent, err := spireBinaries(opt.spireDir)
	if err != nil {
		return nil, err
	}
	signetBin := opt.signetBin
	if signetBin == "" {
		h.logf("building ./cmd/signet")
		if signetBin, err = buildSignet(ctx, filepath.Join(root, "bin")); err != nil {
			return nil, err
		}
	}
	for _, s := range []*system{signetSystem(signetBin), spireSystem(spireServer, spireAgent)} {
		if opt.systems == "" || slices.Contains(strings.Split(strings.ToLower(opt.systems), ","), strings.ToLower(s.name)) {
			h.sys = append(h.sys, s)
		}
	}
	if len(h.sys) == 0 {
		return nil, fmt.Errorf("bench: -systems %q names neither Signet nor SPIRE", opt.systems)
	}
	h.rep.Machine = machine(signetBin, spireServer)

	h.describe()
	if h.enabled(1) || h.enabled(2) || h.enabled(3) || h.enabled(5) {
		for _, s := range h.sys {
			h.pairs[s.name] = h.startPair(ctx, s)
		}
		if h.enabled(1) {
			h.issuance(ctx)
		}
		if h.enabled(2) {
			h.workloadLatency(ctx)
		}
		if h.enabled(3) || h.enabled(5) {
			h.propagation(ctx)
		}
		if h.enabled(5) {
			h.rotation(ctx)
		}
		for _, p := range h.pairs {
			p.stop()
		}
	}
	if h.enabled(4) {
		h.scale(ctx)
	}
	h.rep.Elapsed = time.Since(start).Round(time.Second).String()
	h.rep.Machine = append(h.rep.Machine, "Load average (1, 5, 15 min) at the start: "+startLoad+"; at the end: "+loadAverage()+
		" (other work on the machine shares its CPUs with this run)")
	h.sortScenarios()

	if opt.png != "" {
		if err := writeChart(opt.png, h.rep); err != nil {
			return h.rep, err
		}
	}
	if opt.out != "" {
		f, err := os.Create(opt.out)
		if err != nil {
			return h.rep, fmt.Errorf("bench: %w", err)
		}
		pngName := ""
		if opt.png != "" {
			if rel, err := filepath.Rel(filepath.Dir(opt.out), opt.png); err == nil {
				pngName = rel
			}
		}
		if err := h.rep.markdown(f, pngName); err != nil {
			f.Close()
			return h.rep, err
		}
		if err := f.Close(); err != nil {
			return h.rep, fmt.Errorf("bench: %w", err)
		}
	}
	return h.rep, ctx.Err()
}

func (h *harness) sortScenarios() {
	s := h.rep.Scenarios
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].N < s[j-1].N; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// startPair starts sys's server and agent, with a workload entry for the
// harness's uid registered before the agent starts.
func (h *harness) startPair(ctx context.Context, sys *system) *pair {
	p := &pair{sys: sys, workload: spiffeid.RequireFromPath(trustDomain, "/bench/workload")}
	dir := filepath.Join(h.root, strings.ToLower(sys.name))
	h.logf("starting %s server and agent", sys.name)
	p.srv, p.err = startServer(ctx, sys, dir)
	if p.err != nil {
		return p
	}
	token, err := p.srv.token(ctx)
	if err != nil {
		p.err = err
		return p
	}
	if _, err := p.srv.createEntries(ctx, []*types.Entry{{
		SpiffeId: protoID(p.workload), ParentId: protoID(agentID(token)), Selectors: h.uidSelector(),
	}}, 1, 1); err != nil {
		p.err = err
		return p
	}
	if p.ag, p.err = startAgent(ctx, p.srv, filepath.Join(dir, "a"), token); p.err != nil {
		return p
	}
	_, p.err = waitForSVID(ctx, p.ag, p.workload, 90*time.Second)
	if p.err != nil {
		h.logf("%s: %v", sys.name, p.err)
	}
	return p
}

func (p *pair) stop() {
	p.ag.stop()
	p.srv.stop()
}

func (h *harness) uidSelector() []*types.Selector {
	return []*types.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(h.uid)}}
}

// forEach measures f for Signet and SPIRE (in that order) and returns the
// two values; a pair that failed to start gives its error.
func (h *harness) forEach(f func(p *pair) (float64, error)) (signet, spire value) {
	vals := map[string]value{}
	for _, s := range h.sys {
		p := h.pairs[s.name]
		switch {
		case p == nil:
			vals[s.name] = missing("not run")
		case p.err != nil:
			vals[s.name] = failed(p.err)
		default:
			v, err := f(p)
			var unavail errUnavailable
			if errors.As(err, &unavail) {
				vals[s.name] = missing(unavail.Error())
			} else if err != nil {
				h.logf("%s: %v", s.name, err)
				vals[s.name] = failed(err)
			} else {
				vals[s.name] = measured(v)
			}
		}
	}
	return vals["Signet"], vals["SPIRE"]
}

func numCPU() int { return runtime.NumCPU() }

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

// spireBinaries finds spire-server and spire-agent.
func spireBinaries(dir string) (string, string, error) {
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", "", err
		}
		cmd := exec.Command(filepath.Join(root, "scripts", "install-spire.sh"))
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", "", fmt.Errorf("%w: SPIRE v1.13.3 binaries unavailable: set SIGNET_SPIRE_DIR or fix scripts/install-spire.sh: %w\n%s", errNoSPIRE, err, stderr.String())
		}
		dir = strings.TrimSpace(string(out))
	}
	srv, ag := filepath.Join(dir, "spire-server"), filepath.Join(dir, "spire-agent")
	for _, p := range []string{srv, ag} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("%w: %w", errNoSPIRE, err)
		}
	}
	return srv, ag, nil
}

// errNoSPIRE marks a machine without the SPIRE binaries.
var errNoSPIRE = errors.New("bench: SPIRE binaries not found")

// moduleRoot finds the Signet module's directory from the working
// directory upwards.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	for i := 0; i < 10; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/signet-id/signet\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("bench: run from inside the Signet module (go.mod of github.com/signet-id/signet not found)")
}

func buildSignet(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "signet")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/signet")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: go build ./cmd/signet: %w\n%s", err, b)
	}
	return out, nil
}

// machine describes this machine and the binaries for the report.
func machine(signetBin, spireBin string) []string {
	model := "unknown"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	mem := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				f := strings.Fields(rest)
				if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
					mem = fmt.Sprintf("%.1f GiB", kb/1024/1024)
				}
			}
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	goVer := func(bin string) string {
		if bi, err := buildinfo.ReadFile(bin); err == nil {
			return bi.GoVersion
		}
		return "unknown"
	}
	return []string{
		fmt.Sprintf("Machine: %d CPUs (nproc), %s, %s memory, Linux %s/%s %s", runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH, kernel),
		fmt.Sprintf("Go: harness %s; signet built with %s; spire-server/spire-agent v1.13.3 built with %s", runtime.Version(), goVer(signetBin), goVer(spireBin)),
		"Clients: go-spiffe v2.9.0 (Workload API), spire-api-sdk v1.13.3 (server API)",
	}
}
