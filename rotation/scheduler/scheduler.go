package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/clock"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"golang.org/x/time/rate"
)

// Defaults.
const (
	DefaultPrefix         = "/signet/sched/"
	DefaultSessionTTL     = 5 * time.Second
	DefaultConcurrency    = 16
	DefaultRate           = 500 // items per second
	DefaultBurst          = 50
	DefaultFetchBatch     = 256
	DefaultBackoffBase    = time.Second
	DefaultBackoffMax     = 5 * time.Minute
	DefaultHandlerTimeout = time.Minute
	DefaultGaugeInterval  = 15 * time.Second

	// maxAttempts bounds optimistic read-compare-write retries.
	maxAttempts = 16
	// maxClaimBatch bounds the items claimed in one transaction (etcd
	// allows 128 compares and 128 operations per transaction by default;
	// a claim takes 3 of each, plus the fence).
	maxClaimBatch = 32
	// maxCompleteBatch bounds the completions in one transaction (2
	// compares and up to 3 operations each).
	maxCompleteBatch = 32
	// numCommitters is the number of goroutines writing completions.
	numCommitters = 2
	// maxConsecutiveErrors: a leader that cannot read or write etcd this
	// many times in a row steps down.
	maxConsecutiveErrors = 8
)

// Handler runs the due items of one Kind.
//
// Handle returns (nil, nil) when the item is done (it is deleted), a next
// item to reschedule it (next.ID is forced to the item's ID; an empty Kind
// keeps the item's kind), or an error to retry it later with capped
// exponential backoff. Delivery is at least once: Handle may see an item
// again after a leader change (Item.Attempt > 0) and must be idempotent.
// The context carries the leader's Term (TermFrom); it is cancelled when
// leadership is lost, the scheduler stops or the handler timeout elapses.
type Handler interface {
	Handle(ctx context.Context, it Item) (next *Item, err error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, it Item) (*Item, error)

var _ Handler = HandlerFunc(nil)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, it Item) (*Item, error) { return f(ctx, it) }

// Option configures a Scheduler.
type Option func(*config)

type config struct {
	prefix         string
	name           string
	clock          clock.Clock
	log            *slog.Logger
	reg            prometheus.Registerer
	ttl            time.Duration
	concurrency    int
	rate           float64
	burst          int
	fetchBatch     int
	backoffBase    time.Duration
	backoffMax     time.Duration
	handlerTimeout time.Duration
	gaugeInterval  time.Duration
}

// WithPrefix sets the etcd key prefix (default DefaultPrefix; a missing
// trailing "/" is added). Replicas that share a schedule must use the same
// prefix.
func WithPrefix(p string) Option { return func(c *config) { c.prefix = p } }

// WithName sets this replica's name, stored as the election value and in
// claim records (default "<hostname>-<pid>").
func WithName(n string) Option { return func(c *config) { c.name = n } }

// WithClock sets the clock (default the wall clock).
func WithClock(cl clock.Clock) Option { return func(c *config) { c.clock = cl } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithRegisterer registers the scheduler's metrics with r (default: none).
func WithRegisterer(r prometheus.Registerer) Option { return func(c *config) { c.reg = r } }

// WithSessionTTL sets the leader session's lease TTL (default 5s, rounded
// up to whole seconds): how long a dead leader's lease outlives it.
func WithSessionTTL(d time.Duration) Option { return func(c *config) { c.ttl = d } }

// WithConcurrency bounds the handlers running at once, which is also the
// bound on items in flight (default 16).
func WithConcurrency(n int) Option { return func(c *config) { c.concurrency = n } }

// WithRate bounds dispatches per second (token bucket with the given
// burst; default 500/s, burst 50). perSecond <= 0 means unlimited.
func WithRate(perSecond float64, burst int) Option {
	return func(c *config) { c.rate, c.burst = perSecond, burst }
}

// WithFetchBatch sets how many due-index keys one scan reads (default 256;
// at least twice the concurrency is used).
func WithFetchBatch(n int) Option { return func(c *config) { c.fetchBatch = n } }

// WithBackoff sets the retry delay after a handler error: base after the
// first failure, doubling, capped at limit (default 1s, 5m).
func WithBackoff(base, limit time.Duration) Option {
	return func(c *config) { c.backoffBase, c.backoffMax = base, limit }
}

// WithHandlerTimeout bounds one Handle call (default 1m).
func WithHandlerTimeout(d time.Duration) Option { return func(c *config) { c.handlerTimeout = d } }

// WithGaugeInterval sets how often the leader refreshes the items and
// backlog gauges, on the scheduler's clock (default 15s).
func WithGaugeInterval(d time.Duration) Option { return func(c *config) { c.gaugeInterval = d } }

// Scheduler is one replica of the rotation scheduler. Every method except
// Run may be called on any replica, leader or not.
type Scheduler struct {
	cli  *clientv3.Client
	keys keys
	cfg  config
	log  *slog.Logger
	m    *metrics

	limiter *rate.Limiter

	hmu      sync.RWMutex
	handlers map[string]Handler

	started atomic.Bool
	running atomic.Int64 // claimed items whose handler has not finished
	termMu  sync.Mutex
	term    Term // zero when not leader
}

// New returns a scheduler replica over cli. Register handlers with Handle,
// then call Run.
func New(cli *clientv3.Client, opts ...Option) (*Scheduler, error) {
	if cli == nil {
		return nil, errors.New("scheduler: etcd client is required")
	}
	cfg := config{
		prefix:         DefaultPrefix,
		clock:          clock.Real(),
		ttl:            DefaultSessionTTL,
		concurrency:    DefaultConcurrency,
		rate:           DefaultRate,
		burst:          DefaultBurst,
		fetchBatch:     DefaultFetchBatch,
		backoffBase:    DefaultBackoffBase,
		backoffMax:     DefaultBackoffMax,
		handlerTimeout: DefaultHandlerTimeout,
		gaugeInterval:  DefaultGaugeInterval,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.prefix == "" {
		return nil, errors.New("scheduler: empty key prefix")
	}
	if !strings.HasSuffix(cfg.prefix, "/") {
		cfg.prefix += "/"
	}
	if cfg.name == "" {
		host, _ := os.Hostname()
		cfg.name = host + "-" + strconv.Itoa(os.Getpid())
	}
	if cfg.clock == nil {
		cfg.clock = clock.Real()
	}
	if cfg.ttl <= 0 {
		cfg.ttl = DefaultSessionTTL
	}
	cfg.concurrency = max(cfg.concurrency, 1)
	cfg.fetchBatch = max(cfg.fetchBatch, 2*cfg.concurrency, 1)
	if cfg.backoffBase <= 0 {
		cfg.backoffBase = DefaultBackoffBase
	}
	cfg.backoffMax = max(cfg.backoffMax, cfg.backoffBase)
	if cfg.handlerTimeout <= 0 {
		cfg.handlerTimeout = DefaultHandlerTimeout
	}
	if cfg.gaugeInterval <= 0 {
		cfg.gaugeInterval = DefaultGaugeInterval
	}
	lim := rate.NewLimiter(rate.Inf, 1)
	if cfg.rate > 0 && !math.IsInf(cfg.rate, 1) {
		lim = rate.NewLimiter(rate.Limit(cfg.rate), max(cfg.burst, 1))
	}
	log := cfg.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.reg)
	if err != nil {
		return nil, err
	}
	return &Scheduler{
		cli:      cli,
		keys:     keys{prefix: cfg.prefix},
		cfg:      cfg,
		log:      log.With("replica", cfg.name),
		m:        m,
		limiter:  lim,
		handlers: make(map[string]Handler),
	}, nil
}

// Handle registers h for items of kind, replacing any earlier handler.
// Items whose kind has no handler are retried with backoff.
func (s *Scheduler) Handle(kind string, h Handler) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if h == nil {
		delete(s.handlers, kind)
		return
	}
	s.handlers[kind] = h
}

func (s *Scheduler) handler(kind string) Handler {
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	return s.handlers[kind]
}

// IsLeader reports whether this replica currently holds the leadership.
func (s *Scheduler) IsLeader() bool {
	_, ok := s.CurrentTerm()
	return ok
}

// Running returns the number of items this replica has claimed and not
// yet completed (at most the concurrency).
func (s *Scheduler) Running() int { return int(s.running.Load()) }

// CurrentTerm returns this replica's leadership term, if it leads.
func (s *Scheduler) CurrentTerm() (Term, bool) {
	s.termMu.Lock()
	defer s.termMu.Unlock()
	return s.term, s.term.Rev != 0
}

// setTerm records t as the current term unless ctx (the session) has
// already ended; it reports whether it did.
func (s *Scheduler) setTerm(ctx context.Context, t Term) bool {
	s.termMu.Lock()
	defer s.termMu.Unlock()
	if ctx.Err() != nil {
		return false
	}
	s.term = t
	s.m.isLeader.Set(1)
	return true
}

// clearTerm records that this replica does not lead (any more).
func (s *Scheduler) clearTerm() {
	s.termMu.Lock()
	defer s.termMu.Unlock()
	if s.term.Rev != 0 {
		s.m.leaderChanges.WithLabelValues("lost").Inc()
	}
	s.term = Term{}
	s.m.isLeader.Set(0)
}

// Run campaigns for leadership and, while leading, dispatches due items.
// It returns nil when ctx is done, after resigning and waiting for
// running handlers; it may be called once.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("scheduler: Run called twice")
	}
	const minPause, maxPause = 100 * time.Millisecond, 5 * time.Second
	pause := minPause
	for {
		led, err := s.lead(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if led {
			pause = minPause
		}
		if err != nil {
			s.log.Warn("scheduler: leadership ended", "err", err)
		}
		if !sleepCtx(ctx, pause) {
			return nil
		}
		pause = min(2*pause, maxPause)
	}
}

// lead runs one session: campaign, lead until the term ends, resign. It
// reports whether this replica became leader.
func (s *Scheduler) lead(ctx context.Context) (bool, error) {
	ttl := int((s.cfg.ttl + time.Second - 1) / time.Second)
	// Grant under ctx: NewSession would grant on the client's context,
	// which a cancelled Run cannot interrupt.
	granting := time.Now()
	lease, err := s.cli.Grant(ctx, int64(ttl))
	if err != nil {
		return false, fmt.Errorf("scheduler: grant session lease: %w", err)
	}
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(ttl), concurrency.WithLease(lease.ID))
	if err != nil {
		return false, fmt.Errorf("scheduler: session: %w", err)
	}
	// On the way out: stop the keepalives and revoke the lease, so that a
	// follower's campaign proceeds at once (quickly given up if the lease
	// is already lost or etcd unreachable).
	lost := false
	defer func() {
		sess.Orphan()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), s.releaseTimeout(lost))
		defer rcancel()
		if _, err := s.cli.Revoke(rctx, lease.ID); err != nil {
			s.log.Debug("scheduler: revoke session lease", "err", err)
		}
	}()

	// The term ends when ctx ends, when the session's keepalives stop, or
	// when the lease guard can no longer vouch that the lease is alive on
	// the server; at that moment this replica stops claiming leadership,
	// even while its handlers wind down.
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopSess := context.AfterFunc(sess.Ctx(), func() { cancel(errSessionLost) })
	defer stopSess()
	stopClear := context.AfterFunc(sctx, s.clearTerm)
	defer stopClear()
	var guard sync.WaitGroup
	defer guard.Wait()
	defer cancel(nil)
	leaseTTL := time.Duration(lease.TTL) * time.Second
	guard.Go(func() { s.guardLease(sctx, lease.ID, granting.Add(leaseTTL), leaseTTL, cancel) })

	el := concurrency.NewElection(sess, s.keys.election())
	if err := s.campaign(sctx, el); err != nil {
		return false, err
	}
	t := Term{Key: el.Key(), Rev: el.Rev()}
	if !s.setTerm(sctx, t) {
		return false, context.Cause(sctx)
	}
	s.m.leaderChanges.WithLabelValues("acquired").Inc()
	s.log.Info("scheduler: leading", "leader_key", t.Key, "leader_rev", t.Rev)

	err = s.runTerm(sctx, t)

	s.clearTerm()
	s.m.items.Set(0)
	s.m.backlog.Set(0)
	if cause := context.Cause(sctx); err == nil || errors.Is(err, context.Canceled) {
		err = cause
	}
	s.log.Info("scheduler: stopped leading", "leader_rev", t.Rev, "reason", err)
	lost = errors.Is(err, errSessionLost) || errors.Is(err, errLeaseUnconfirmed)
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), s.releaseTimeout(lost))
	defer rcancel()
	if rerr := el.Resign(rctx); rerr != nil {
		s.log.Debug("scheduler: resign", "err", rerr)
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	return true, err
}

// guardLease renews the session lease with its own keepalives and calls
// lost once it cannot prove that the lease is still alive on the server.
//
// A keepalive sent at time t and answered renews the lease on the server
// at some time >= t, so the lease lives at least until t + TTL (server
// and local clocks advance at the same rate over seconds). The guard
// keeps that lower bound, safeUntil, and gives up a fifth of the TTL
// before it, so that a leader cut off from etcd cancels its handlers
// before its lease can expire and another replica can be elected. The
// session's own keepalives (whose responses do not say when their request
// was sent) cannot give that bound.
func (s *Scheduler) guardLease(ctx context.Context, id clientv3.LeaseID, safeUntil time.Time, ttl time.Duration, lost context.CancelCauseFunc) {
	margin, interval := ttl/5, ttl/3
	for {
		giveUp := safeUntil.Add(-margin)
		wait := min(interval, time.Until(giveUp))
		if wait <= 0 {
			lost(errLeaseUnconfirmed)
			return
		}
		if !sleepCtx(ctx, wait) {
			return
		}
		if !time.Now().Before(giveUp) {
			lost(errLeaseUnconfirmed)
			return
		}
		sent := time.Now()
		kctx, cancel := context.WithDeadline(ctx, giveUp)
		resp, err := s.cli.KeepAliveOnce(kctx, id)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			lost(errSessionLost)
			return
		case err != nil:
			s.log.Debug("scheduler: lease keepalive failed", "err", err)
		case resp.TTL > 0:
			safeUntil = sent.Add(time.Duration(resp.TTL) * time.Second)
		}
	}
}

// campaign waits until el's session leads. When ctx ends first,
// Campaign withdraws its candidacy on the client's context, which cannot be
// interrupted; campaign waits for that only briefly (the lease, revoked or
// left to expire, removes the candidacy anyway), so that Run returns
// promptly even when etcd is unreachable.
func (s *Scheduler) campaign(ctx context.Context, el *concurrency.Election) error {
	done := make(chan error, 1)
	go func() { done <- el.Campaign(ctx, s.cfg.name) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("scheduler: campaign: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	t := time.NewTimer(s.releaseTimeout(true))
	defer t.Stop()
	select {
	case err := <-done:
		// The candidacy was withdrawn or the campaign failed: either way
		// it ended because ctx did, which is what Run reports.
		s.log.Debug("scheduler: campaign ended with the context", "err", err)
	case <-t.C:
	}
	return fmt.Errorf("scheduler: campaign: %w", context.Cause(ctx))
}

// releaseTimeout bounds resigning and revoking at the end of a session:
// short when the lease is already lost (they most likely fail).
func (s *Scheduler) releaseTimeout(lost bool) time.Duration {
	if lost {
		return 500 * time.Millisecond
	}
	return 2 * time.Second
}

// completeTimeout bounds writing one completion. A completion that takes
// longer than the session TTL could not land under a live lease anyway.
func (s *Scheduler) completeTimeout() time.Duration {
	return max(s.cfg.ttl, time.Second)
}

var errLeaseUnconfirmed = errors.New("scheduler: session lease not confirmed in time")

var errSessionLost = errors.New("scheduler: leader session lost")

// sleepCtx waits d of real time; false if ctx ended first. It paces
// retries against etcd, which are not part of the schedule.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
