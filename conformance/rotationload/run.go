package rotationload

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
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
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// Defaults for Config.
const (
	DefaultStartConcurrency = 32
	DefaultPollInterval     = 100 * time.Millisecond
	DefaultCeilingDuration  = 2 * time.Second
	// entryChunk is how many entries one BatchCreateEntry call creates.
	entryChunk = 500
	// tokenWorkers is how many join tokens are created at once.
	tokenWorkers = 8
	// waitStep is the polling step of the bounded waits between phases.
	waitStep = 50 * time.Millisecond
	// phaseTimeout bounds each wait between phases.
	phaseTimeout = 5 * time.Minute
)

// Config configures one measurement.
type Config struct {
	// TrustDomain defaults to example.org.
	TrustDomain     spiffeid.TrustDomain
	Agents          int
	EntriesPerAgent int
	// ReuseKey: see AgentConfig.ReuseKey.
	ReuseKey bool
	// Dir holds the server's data and admin socket; its path must be short
	// (Unix socket paths are limited to 108 bytes).
	Dir string
	// StartConcurrency bounds how many agents attest and obtain their first
	// SVIDs at once (default DefaultStartConcurrency).
	StartConcurrency int
	// PollInterval is how often the server's count is polled during the
	// rotation (default DefaultPollInterval).
	PollInterval time.Duration
	// CeilingDuration is how long the signing ceiling is measured (default
	// DefaultCeilingDuration).
	CeilingDuration time.Duration
	// CPUProfile, if set, receives a CPU profile of the process from the
	// taint until the rotation is done.
	CPUProfile io.Writer
	Logger     *slog.Logger
	Rand       io.Reader
	Now        func() time.Time
}

// Result is what one measurement found. Durations of the rotation are
// measured from the TaintX509Authority call.
type Result struct {
	Agents, EntriesPerAgent int
	ReuseKey                bool
	Cores                   int
	// LoadBefore and LoadAfter are the machine's 1-minute load average
	// before and after the rotation and its ceilings (-1 if unknown): other
	// processes on the machine compete for the same cores.
	LoadBefore, LoadAfter float64
	OldAuthority          string
	NewAuthority          string

	// Setup.
	Entries      int // registration entries the server counts
	AgentRecords int // attested agents the server counts
	SetupElapsed time.Duration
	LoadElapsed  time.Duration // all agents attested and holding all their SVIDs

	// Rotation.
	OldBefore     int // SVIDs of the old authority counted before the taint
	Replaced      int // the largest count seen while waiting
	Polls         int
	ServerElapsed time.Duration // until the server counted none of the old authority
	AgentsElapsed time.Duration // until the last agent reported holding only new SVIDs
	// AgentsP50 and AgentsP90: until half and nine tenths of the agents had.
	AgentsP50, AgentsP90 time.Duration
	Converged            int // agents that reported
	// Progress is the server's count of the old authority's SVIDs, each
	// time it changed while waiting.
	Progress []taint.Progress
	// PollMax is the longest CountSVIDsByAuthority call while waiting (it
	// writes the server's queued SVID records before counting).
	PollMax  time.Duration
	CPU      time.Duration // process CPU time from the taint until both were done
	OldAfter int           // SVIDs of the old authority counted afterwards
	NewAfter int           // SVIDs of the new authority counted afterwards

	// What the agents hold afterwards, verified against the new authority
	// alone.
	Held          int // workload SVIDs held
	HeldVerified  int // of those, chains verifying to the new authority and naming the entry's ID
	Missing       int // registered entries an agent holds no SVID for
	OwnVerified   int // agent SVIDs verifying to the new authority
	AgentRenewals int
	Notifications map[string]int

	// KEX counts the agent listener's TLS handshakes by key exchange group.
	KEX map[string]int

	// Memory of this process (server, embedded etcd and simulated agents).
	MemBaseline Memory // server started, nothing loaded
	MemLoaded   Memory // every agent connected and holding its SVIDs
	MemServer   Memory // after the rotation with every agent disconnected
	Etcd        EtcdStats

	// CeilingBefore is measured just before the taint, CeilingAfter just
	// after the rotation (agents connected and idle both times), so that
	// the ceiling sees about the same competition for the cores as the
	// rotation.
	CeilingBefore, CeilingAfter Ceiling
}

// Ceiling combines the two ceiling measurements.
func (r Result) Ceiling() Ceiling {
	b, a := r.CeilingBefore, r.CeilingAfter
	return Ceiling{Workers: max(b.Workers, a.Workers), Certificates: b.Certificates + a.Certificates, Elapsed: b.Elapsed + a.Elapsed, CPU: b.CPU + a.CPU}
}

// SVIDs is the number of X.509-SVIDs rotated: every workload SVID and every
// agent's own SVID.
func (r Result) SVIDs() int { return r.Agents*r.EntriesPerAgent + r.Agents }

// ServerRate is the SVIDs replaced per second until the server counted none
// of the old authority.
func (r Result) ServerRate() float64 { return rate(r.SVIDs(), r.ServerElapsed) }

// AgentsRate is the SVIDs replaced per second until every agent held only
// new ones.
func (r Result) AgentsRate() float64 { return rate(r.SVIDs(), r.AgentsElapsed) }

// CeilingRatio is ServerRate divided by the raw signing ceiling.
func (r Result) CeilingRatio() float64 {
	if c := r.Ceiling().PerSecond(); c > 0 {
		return r.ServerRate() / c
	}
	return 0
}

// CPUPerSVID is the process's CPU time per rotated SVID: the server's
// work and the simulated agents' (keys, CSRs, TLS) together.
func (r Result) CPUPerSVID() time.Duration {
	if r.SVIDs() == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.SVIDs())
}

// CPUBusy is the share of the machine's cores the process used during the
// rotation.
func (r Result) CPUBusy() float64 {
	d := max(r.ServerElapsed, r.AgentsElapsed)
	if d <= 0 || r.Cores == 0 {
		return 0
	}
	return r.CPU.Seconds() / (d.Seconds() * float64(r.Cores))
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

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

// createTokens creates one join token per agent.
func (r *run) createTokens(ctx context.Context) ([]string, error) {
	tokens := make([]string, r.cfg.Agents)
	client := agentv1.NewAgentClient(r.admin)
	next := make(chan int)
	errs := make(chan error, tokenWorkers)
	var wg sync.WaitGroup
	for range tokenWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				tok, err := client.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 24 * 3600})
				if err != nil {
					errs <- fmt.Errorf("rotationload: create join token: %w", err)
					return
				}
				tokens[i] = tok.Value
			}
		}()
	}
	var err error
feed:
	for i := range tokens {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return tokens, err
}

// createEntries registers EntriesPerAgent entries under each agent.
func (r *run) createEntries(ctx context.Context, tokens []string) error {
	td := r.cfg.TrustDomain
	r.expected = make(map[spiffeid.ID]map[string]spiffeid.ID, len(tokens))
	var batch []*types.Entry
	var owners []spiffeid.ID
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		resp, err := entryv1.NewEntryClient(r.admin).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: batch})
		if err != nil {
			return fmt.Errorf("rotationload: BatchCreateEntry: %w", err)
		}
		if len(resp.Results) != len(batch) {
			return fmt.Errorf("rotationload: BatchCreateEntry answered %d results for %d entries", len(resp.Results), len(batch))
		}
		for i, res := range resp.Results {
			if c := codes.Code(res.GetStatus().GetCode()); c != codes.OK {
				return fmt.Errorf("rotationload: create entry %s: %v %s", batch[i].SpiffeId.Path, c, res.GetStatus().GetMessage())
			}
			id, err := entryID(batch[i])
			if err != nil {
				return err
			}
			r.expected[owners[i]][res.Entry.Id] = id
		}
		batch, owners = batch[:0], owners[:0]
		return nil
	}
	for i, tok := range tokens {
		agentID, err := spiffeid.FromSegments(td, "spire", "agent", "join_token", tok)
		if err != nil {
			return fmt.Errorf("rotationload: join token: %w", err)
		}
		r.expected[agentID] = make(map[string]spiffeid.ID, r.cfg.EntriesPerAgent)
		for j := range r.cfg.EntriesPerAgent {
			batch = append(batch, &types.Entry{
				SpiffeId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: fmt.Sprintf("/load/agent%d/workload%d", i, j)},
				ParentId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: agentID.Path()},
				Selectors: []*types.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 10000+j)}},
			})
			owners = append(owners, agentID)
			if len(batch) == entryChunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	n, err := entryv1.NewEntryClient(r.admin).CountEntries(ctx, &entryv1.CountEntriesRequest{})
	if err != nil {
		return fmt.Errorf("rotationload: CountEntries: %w", err)
	}
	r.res.Entries = int(n.Count)
	return nil
}

// startAgents runs one simulated agent per token, at most StartConcurrency
// of them loading at once, and returns once all hold their SVIDs and the
// server counts them.
func (r *run) startAgents(ctx context.Context, tokens []string, wg *sync.WaitGroup, errs chan<- error) error {
	cfg := r.cfg
	r.converged = make(map[spiffeid.ID]time.Time, len(tokens))
	r.allConv = make(chan struct{})
	bundle := r.srv.CA().Bundle().X509Authorities()
	for _, tok := range tokens {
		a, err := NewAgent(AgentConfig{
			TrustDomain:   cfg.TrustDomain,
			ServerAddress: r.srv.AgentAddr().String(),
			JoinToken:     tok,
			TrustBundle:   bundle,
			ReuseKey:      cfg.ReuseKey,
			Target: func() string {
				if t := r.target.Load(); t != nil {
					return *t
				}
				return ""
			},
			Converged: r.agentConverged,
			Rand:      cfg.Rand,
			Now:       cfg.Now,
		})
		if err != nil {
			return err
		}
		r.agents = append(r.agents, a)
	}
	sem := make(chan struct{}, cfg.StartConcurrency)
	loaded := make(chan struct{}, len(r.agents))
	firstErr := make(chan error, len(r.agents))
	start := cfg.Now()
	for _, a := range r.agents {
		select {
		case sem <- struct{}{}:
		case err := <-firstErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			released := false
			err := a.Run(ctx, func() {
				released = true
				<-sem
				loaded <- struct{}{}
			})
			if !released {
				<-sem
			}
			if err != nil {
				firstErr <- err
				errs <- err
			}
		}()
	}
	for range r.agents {
		select {
		case <-loaded:
		case err := <-firstErr:
			return err
		case <-ctx.Done():
			return fmt.Errorf("rotationload: agents did not load: %w", ctx.Err())
		}
	}
	r.res.LoadElapsed = cfg.Now().Sub(start)
	n, err := agentv1.NewAgentClient(r.admin).CountAgents(ctx, &agentv1.CountAgentsRequest{})
	if err != nil {
		return fmt.Errorf("rotationload: CountAgents: %w", err)
	}
	r.res.AgentRecords = int(n.Count)
	r.res.MemLoaded = sampleMemory()
	return nil
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
