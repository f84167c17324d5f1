package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/clock"
)

// ErrClosed is returned when the Appender was closed.
var ErrClosed = errors.New("eventlog: appender closed")

// Appender batches events into few append transactions. Append queues an
// event (blocking while the queue is full, until ctx is done); a background
// goroutine writes up to the batch size per transaction, as soon as a batch
// is full or the flush interval since its first event has passed. A batch
// that fails to write is retried (with backoff) until it is written or the
// Appender is closed; nothing is dropped without an error from Close and a
// log line and metric.
type Appender struct {
	log      *Log
	cfg      appenderConfig
	queue    chan item
	metrics  appenderMetrics
	mu       sync.RWMutex // held for reading while sending to queue
	closed   bool
	closing  chan struct{}
	done     chan struct{}
	runCtx   context.Context
	cancel   context.CancelFunc
	lostMu   sync.Mutex
	lost     int
	closeErr error
}

type item struct {
	ev    Event
	flush chan error // non-nil for a Flush marker
}

type appenderConfig struct {
	queueSize     int
	maxBatch      int
	flushInterval time.Duration
	reg           prometheus.Registerer
	logger        *slog.Logger
}

// AppenderOption configures an Appender.
type AppenderOption func(*appenderConfig)

// WithQueueSize sets the queue capacity in events (default 10000).
func WithQueueSize(n int) AppenderOption {
	return func(c *appenderConfig) { c.queueSize = max(n, 1) }
}

// WithMaxBatch sets the most events per transaction (default and maximum
// MaxBatch).
func WithMaxBatch(n int) AppenderOption {
	return func(c *appenderConfig) { c.maxBatch = min(max(n, 1), MaxBatch) }
}

// WithFlushInterval sets how long a batch waits for more events after its
// first one (default 20ms).
func WithFlushInterval(d time.Duration) AppenderOption {
	return func(c *appenderConfig) { c.flushInterval = max(d, 0) }
}

// WithRegisterer registers the Appender's metrics (default: not registered).
func WithRegisterer(reg prometheus.Registerer) AppenderOption {
	return func(c *appenderConfig) { c.reg = reg }
}

// WithAppenderLogger sets the logger (default: the Log's).
func WithAppenderLogger(l *slog.Logger) AppenderOption {
	return func(c *appenderConfig) { c.logger = l }
}

type appenderMetrics struct {
	appended   *prometheus.CounterVec
	queueDepth prometheus.Gauge
	latency    prometheus.Histogram
	failures   prometheus.Counter
	lost       prometheus.Counter
}

func newAppenderMetrics(reg prometheus.Registerer) appenderMetrics {
	m := appenderMetrics{
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signet_eventlog_appended_total", Help: "Events appended to the rotation event log, by kind.",
		}, []string{"kind"}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signet_eventlog_queue_depth", Help: "Events queued for the rotation event log and not yet written.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "signet_eventlog_append_latency_seconds",
			Help:    "Time to write one batch of events to etcd (one transaction, including conflict retries).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signet_eventlog_append_failures_total", Help: "Batch writes to the rotation event log that failed and will be retried.",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signet_eventlog_lost_total", Help: "Queued events never written because the appender was closed before etcd accepted them.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.appended, m.queueDepth, m.latency, m.failures, m.lost)
	}
	return m
}

// NewAppender starts an Appender writing to l. Close it to flush and stop.
func NewAppender(l *Log, opts ...AppenderOption) *Appender {
	cfg := appenderConfig{queueSize: 10000, maxBatch: MaxBatch, flushInterval: 20 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = l.log
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Appender{
		log:     l,
		cfg:     cfg,
		queue:   make(chan item, cfg.queueSize),
		metrics: newAppenderMetrics(cfg.reg),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		runCtx:  ctx,
		cancel:  cancel,
	}
	go a.run()
	return a
}

// Append validates e and queues it. It blocks while the queue is full,
// until ctx is done. A nil error means queued, not yet written: use Flush
// to wait for the write.
func (a *Appender) Append(ctx context.Context, e Event) error {
	if err := e.validate(); err != nil {
		return err
	}
	return a.enqueue(ctx, item{ev: e})
}

func (a *Appender) enqueue(ctx context.Context, it item) error {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return ErrClosed
	}
	select {
	case a.queue <- it:
		if it.flush == nil {
			a.metrics.queueDepth.Inc()
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("eventlog: queue full: %w", ctx.Err())
	}
}

// Flush waits until every event queued before the call is written.
func (a *Appender) Flush(ctx context.Context) error {
	done := make(chan error, 1)
	if err := a.enqueue(ctx, item{flush: done}); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("eventlog: flush: %w", ctx.Err())
	}
}

// Close stops accepting events, writes those queued and stops. If ctx ends
// first, the events not yet written are counted as lost, logged, and
// reported in the error. Close is safe to call more than once.
func (a *Appender) Close(ctx context.Context) error {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.closing)
	}
	a.mu.Unlock()
	select {
	case <-a.done:
	case <-ctx.Done():
		a.cancel()
		<-a.done
	}
	a.cancel()
	a.lostMu.Lock()
	defer a.lostMu.Unlock()
	if a.lost > 0 && a.closeErr == nil {
		a.closeErr = fmt.Errorf("eventlog: appender closed with %d events not written", a.lost)
	}
	return a.closeErr
}

// run is the writer goroutine.
func (a *Appender) run() {
	defer close(a.done)
	var batch []Event
	var flushes []chan error
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	timerOn := false
	write := func() bool {
		if timerOn {
			timer.Stop()
			timerOn = false
		}
		ok := a.write(batch)
		if ok {
			for _, f := range flushes {
				f <- nil
			}
			flushes = flushes[:0]
		}
		batch = batch[:0]
		return ok
	}
	fail := func(err error) {
		for _, f := range flushes {
			f <- err
		}
		flushes = nil
	}
	for {
		select {
		case it := <-a.queue:
			if it.flush != nil {
				flushes = append(flushes, it.flush)
				if !write() {
					fail(ErrClosed)
					a.drainLost()
					return
				}
				continue
			}
			a.metrics.queueDepth.Dec()
			batch = append(batch, it.ev)
			if len(batch) >= a.cfg.maxBatch || a.cfg.flushInterval == 0 {
				if !write() {
					a.drainLost()
					return
				}
			} else if !timerOn {
				timer.Reset(a.cfg.flushInterval)
				timerOn = true
			}
		case <-timer.C:
			timerOn = false
			if !write() {
				a.drainLost()
				return
			}
		case <-a.closing:
			// No more senders (Close holds the lock while setting closed):
			// write what is queued, then stop.
			for {
				select {
				case it := <-a.queue:
					if it.flush != nil {
						flushes = append(flushes, it.flush)
						continue
					}
					a.metrics.queueDepth.Dec()
					batch = append(batch, it.ev)
					if len(batch) >= a.cfg.maxBatch && !write() {
						fail(ErrClosed)
						a.drainLost()
						return
					}
					continue
				default:
				}
				break
			}
			if len(batch) > 0 && !write() {
				fail(ErrClosed)
				a.drainLost()
				return
			}
			fail(nil)
			return
		}
	}
}

// write writes batch, retrying with backoff until it succeeds or the
// Appender is cancelled (Close's ctx ended). It reports success; on
// failure the batch is counted as lost.
func (a *Appender) write(batch []Event) bool {
	if len(batch) == 0 {
		return true
	}
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		start := time.Now()
		_, err := a.log.AppendBatch(a.runCtx, batch)
		if err == nil {
			a.metrics.latency.Observe(time.Since(start).Seconds())
			for _, e := range batch {
				a.metrics.appended.WithLabelValues(string(e.Kind)).Inc()
			}
			return true
		}
		a.metrics.failures.Inc()
		if a.runCtx.Err() != nil {
			a.addLost(len(batch))
			return false
		}
		a.cfg.logger.Warn("eventlog: writing events failed, retrying", "events", len(batch), "attempt", attempt, "error", err)
		if !clock.Sleep(a.runCtx, clock.Real(), backoff) {
			a.addLost(len(batch))
			return false
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (a *Appender) addLost(n int) {
	a.lostMu.Lock()
	a.lost += n
	a.lostMu.Unlock()
	a.metrics.lost.Add(float64(n))
	a.cfg.logger.Error("eventlog: events not written to the event log", "events", n)
}

// drainLost counts what is still queued as lost (after a cancelled Close).
func (a *Appender) drainLost() {
	n := 0
	for {
		select {
		case it := <-a.queue:
			if it.flush != nil {
				it.flush <- ErrClosed
				continue
			}
			a.metrics.queueDepth.Dec()
			n++
			continue
		default:
		}
		break
	}
	if n > 0 {
		a.addLost(n)
	}
}
