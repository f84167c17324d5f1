package rotationload

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/ca"
	cav1 "github.com/signet-id/signet/proto/signet/ca/v1"
	"github.com/signet-id/signet/rotation/taint"
	"github.com/signet-id/signet/server"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Run starts a server in this process, loads it with cfg.Agents simulated
// agents holding cfg.EntriesPerAgent X.509-SVIDs each, forces a rotation
// and measures it. It returns an error when a step fails; the Result's
// counts tell whether everything was replaced. ctx bounds the whole run.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Agents < 1 || cfg.EntriesPerAgent < 1 || cfg.Dir == "" {
		return Result{}, errors.New("rotationload: config needs agents, entries per agent and a directory")
	}
	if cfg.TrustDomain.IsZero() {
		cfg.TrustDomain = spiffeid.RequireTrustDomainFromString("example.org")
	}
	if cfg.StartConcurrency <= 0 {
		cfg.StartConcurrency = DefaultStartConcurrency
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.CeilingDuration <= 0 {
		cfg.CeilingDuration = DefaultCeilingDuration
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &run{cfg: cfg, res: Result{Agents: cfg.Agents, EntriesPerAgent: cfg.EntriesPerAgent, ReuseKey: cfg.ReuseKey, Cores: runtime.GOMAXPROCS(0)}}
	err := r.run(ctx)
	return r.res, err
}

// run is the state of one measurement.
type run struct {
	cfg   Config
	res   Result
	srv   *server.Server
	reg   *prometheus.Registry
	admin *grpc.ClientConn

	agents   []*Agent
	expected map[spiffeid.ID]map[string]spiffeid.ID // agent -> entry ID -> SPIFFE ID

	target    atomic.Pointer[string]
	convMu    sync.Mutex
	converged map[spiffeid.ID]time.Time
	allConv   chan struct{}
}

func (r *run) run(ctx context.Context) error {
	cfg := r.cfg
	dataDir := filepath.Join(cfg.Dir, "server")
	r.reg = prometheus.NewRegistry()
	srv, err := server.New(server.Config{
		TrustDomain: cfg.TrustDomain,
		DataDir:     dataDir,
		BindAddress: "127.0.0.1:0",
		AdminSocket: filepath.Join(cfg.Dir, "admin.sock"),
		Registry:    r.reg,
		Logger:      cfg.Logger.With("component", "server"),
	})
	if err != nil {
		return err
	}
	r.srv = srv
	sctx, stopServer := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	serverStopped := false
	stop := func() error {
		if serverStopped {
			return nil
		}
		serverStopped = true
		stopServer()
		return <-done
	}
	defer func() { _ = stop() }() // early returns; the normal path checks stop() below
	select {
	case <-srv.Ready():
	case err := <-done:
		serverStopped = true
		return fmt.Errorf("rotationload: server: %w", err)
	case <-ctx.Done():
		return fmt.Errorf("rotationload: server did not start: %w", ctx.Err())
	}
	r.admin, err = grpc.NewClient("unix://"+srv.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer r.admin.Close()
	r.res.MemBaseline = sampleMemory()

	setupStart := cfg.Now()
	tokens, err := r.createTokens(ctx)
	if err != nil {
		return err
	}
	if err := r.createEntries(ctx, tokens); err != nil {
		return err
	}
	r.res.SetupElapsed = cfg.Now().Sub(setupStart)

	actx, stopAgents := context.WithCancel(ctx)
	var wg sync.WaitGroup
	agentErrs := make(chan error, cfg.Agents)
	agentsStopped := false
	stopAll := func() {
		if !agentsStopped {
			agentsStopped = true
			stopAgents()
			wg.Wait()
		}
	}
	defer stopAll()
	if err := r.startAgents(actx, tokens, &wg, agentErrs); err != nil {
		return err
	}
	if err := r.rotate(ctx, agentErrs); err != nil {
		return err
	}
	r.verifyHoldings()
	select {
	case err := <-agentErrs:
		return err
	default:
	}
	for _, a := range r.agents {
		st := a.Stats()
		r.res.AgentRenewals += st.Renewals
		if r.res.Notifications == nil {
			r.res.Notifications = map[string]int{}
		}
		for k, v := range st.Notifications {
			r.res.Notifications[k] += v
		}
	}
	r.res.KEX = handshakes(r.reg)

	stopAll()
	r.agents = nil
	r.res.MemServer = sampleMemory()
	if err := stop(); err != nil {
		return fmt.Errorf("rotationload: server: %w", err)
	}
	r.res.Etcd, err = inspectEtcd(ctx, filepath.Join(dataDir, "etcd"), cfg.Logger)
	return err
}

func (r *run) agentConverged(id spiffeid.ID, authority string, at time.Time) {
	if t := r.target.Load(); t == nil || *t != authority {
		return
	}
	r.convMu.Lock()
	defer r.convMu.Unlock()
	if _, dup := r.converged[id]; dup {
		return
	}
	r.converged[id] = at
	if len(r.converged) == len(r.agents) {
		close(r.allConv)
	}
}

// count asks the server how many live SVIDs authority signed.
func (r *run) count(ctx context.Context, authority string) (int, error) {
	resp, err := cav1.NewCAClient(r.admin).CountSVIDsByAuthority(ctx, &cav1.CountSVIDsByAuthorityRequest{AuthorityId: authority})
	if err != nil {
		return 0, fmt.Errorf("rotationload: CountSVIDsByAuthority: %w", err)
	}
	return int(resp.Count), nil
}

// waitUntil polls cond every waitStep for at most phaseTimeout.
func (r *run) waitUntil(ctx context.Context, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, phaseTimeout)
	defer cancel()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rotationload: %s: %w", what, ctx.Err())
		case <-time.After(waitStep):
		}
	}
}

// rotate prepares and activates a new X.509 authority, waits until every
// agent trusts it, taints the old one and measures the replacement.
func (r *run) rotate(ctx context.Context, agentErrs <-chan error) error {
	la := localauthorityv1.NewLocalAuthorityClient(r.admin)
	state, err := la.GetX509AuthorityState(ctx, &localauthorityv1.GetX509AuthorityStateRequest{})
	if err != nil {
		return fmt.Errorf("rotationload: GetX509AuthorityState: %w", err)
	}
	old := state.GetActive().GetAuthorityId()
	r.res.OldAuthority = old
	total := r.res.SVIDs()
	if err := r.waitUntil(ctx, "every SVID tracked by the server", func() (bool, error) {
		n, err := r.count(ctx, old)
		r.res.OldBefore = n
		return n >= total, err
	}); err != nil {
		return err
	}

	prep, err := la.PrepareX509Authority(ctx, &localauthorityv1.PrepareX509AuthorityRequest{})
	if err != nil {
		return fmt.Errorf("rotationload: PrepareX509Authority: %w", err)
	}
	next := prep.GetPreparedAuthority().GetAuthorityId()
	r.res.NewAuthority = next
	if _, err := la.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: next}); err != nil {
		return fmt.Errorf("rotationload: ActivateX509Authority: %w", err)
	}
	if err := r.settle(ctx, "every agent trusts the new authority and is idle", agentErrs, func(a *Agent) bool { return trusts(a.Roots(), next) }); err != nil {
		return err
	}

	r.res.LoadBefore = loadAverage()
	if r.res.CeilingBefore, err = r.ceiling(ctx); err != nil {
		return err
	}
	r.target.Store(&next)
	if r.cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(r.cfg.CPUProfile); err != nil {
			return fmt.Errorf("rotationload: start CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuTime()
	start := r.cfg.Now()
	if _, err := la.TaintX509Authority(ctx, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: old}); err != nil {
		return fmt.Errorf("rotationload: TaintX509Authority: %w", err)
	}
	res, err := taint.Wait(ctx, func(ctx context.Context) (int, error) {
		t0 := r.cfg.Now()
		n, err := r.count(ctx, old)
		r.res.PollMax = max(r.res.PollMax, r.cfg.Now().Sub(t0))
		return n, err
	},
		taint.Options{Start: start, Initial: r.res.OldBefore, Interval: r.cfg.PollInterval, Timeout: phaseTimeout, Now: r.cfg.Now,
			OnProgress: func(p taint.Progress) { r.res.Progress = append(r.res.Progress, p) }})
	r.res.Replaced, r.res.Polls, r.res.ServerElapsed = res.Replaced, res.Polls, res.Elapsed
	if err != nil {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, phaseTimeout)
	defer cancel()
	select {
	case <-r.allConv:
	case err := <-agentErrs:
		return err
	case <-wait.Done():
		return fmt.Errorf("rotationload: agents did not all report holding only SVIDs of the new authority: %w", wait.Err())
	}
	r.res.CPU = cpuTime() - cpu0
	if r.cfg.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	r.convMu.Lock()
	r.res.Converged = len(r.converged)
	times := make([]time.Duration, 0, len(r.converged))
	for _, at := range r.converged {
		times = append(times, at.Sub(start))
	}
	r.convMu.Unlock()
	slices.Sort(times)
	if n := len(times); n > 0 {
		r.res.AgentsP50, r.res.AgentsP90, r.res.AgentsElapsed = times[(n-1)/2], times[(n-1)*9/10], times[n-1]
	}

	if r.res.OldAfter, err = r.count(ctx, old); err != nil {
		return err
	}
	if r.res.NewAfter, err = r.count(ctx, next); err != nil {
		return err
	}
	if err := r.settle(ctx, "every agent is idle after the rotation", agentErrs, nil); err != nil {
		return err
	}
	r.res.CeilingAfter, err = r.ceiling(ctx)
	r.res.LoadAfter = loadAverage()
	return err
}

// ceiling measures the raw signing ceiling on as many workers as the
// process has cores.
func (r *run) ceiling(ctx context.Context) (Ceiling, error) {
	return SigningCeiling(ctx, CeilingConfig{Workers: r.res.Cores, Duration: r.cfg.CeilingDuration, Rand: r.cfg.Rand, Now: r.cfg.Now})
}

// settle waits until every agent is idle and satisfies cond (if not nil),
// on two polls in a row with no notification received in between, so that
// what follows does not compete with agents still acting on notifications.
func (r *run) settle(ctx context.Context, what string, agentErrs <-chan error, cond func(*Agent) bool) error {
	last := int64(-1)
	return r.waitUntil(ctx, what, func() (bool, error) {
		select {
		case err := <-agentErrs:
			return false, err
		default:
		}
		var received int64
		ok := true
		for _, a := range r.agents {
			received += a.Received()
			if !a.Idle() || (cond != nil && !cond(a)) {
				ok = false
			}
		}
		settled := ok && received == last
		if ok {
			last = received
		} else {
			last = -1
		}
		return settled, nil
	})
}

// trusts reports whether roots hold the authority with the given ID.
func trusts(roots []*x509.Certificate, authority string) bool {
	for _, c := range roots {
		if ca.X509AuthorityID(c) == authority {
			return true
		}
	}
	return false
}

// verifyHoldings checks every SVID the agents hold against the new
// authority alone and against the registered entries.
func (r *run) verifyHoldings() {
	var root []*x509.Certificate
	for _, c := range r.srv.CA().Bundle().X509Authorities() {
		if ca.X509AuthorityID(c) == r.res.NewAuthority {
			root = append(root, c)
		}
	}
	bundle := x509bundle.FromX509Authorities(r.cfg.TrustDomain, root)
	for _, a := range r.agents {
		own, held := a.Holdings()
		if id, _, err := x509svid.Verify(own, bundle); err == nil && id == a.ID() {
			r.res.OwnVerified++
		}
		want := r.expected[a.ID()]
		r.res.Held += len(held)
		for entry, sid := range want {
			chain, ok := held[entry]
			if !ok {
				r.res.Missing++
				continue
			}
			if id, _, err := x509svid.Verify(chain, bundle); err == nil && id == sid {
				r.res.HeldVerified++
			}
		}
	}
}

// handshakes returns the server's TLS handshake counts by key exchange
// group.
func handshakes(reg *prometheus.Registry) map[string]int {
	out := map[string]int{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "signet_server_tls_handshakes_total" {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "group" {
					out[l.GetValue()] += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return out
}
