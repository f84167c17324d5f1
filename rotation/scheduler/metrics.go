package scheduler

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	isLeader      prometheus.Gauge
	items         prometheus.Gauge
	backlog       prometheus.Gauge
	dispatched    *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	leaderChanges *prometheus.CounterVec
	requeued      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "signet", "scheduler"
	m := &metrics{
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "is_leader",
			Help: "1 while this replica is the scheduler leader.",
		}),
		items: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "items",
			Help: "Scheduled items, pending and in flight (reported by the leader; 0 elsewhere).",
		}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "due_backlog",
			Help: "Pending items already due (reported by the leader; 0 elsewhere).",
		}),
		dispatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "dispatched_total",
			Help: "Items dispatched, by kind and result (done, rescheduled, retry, superseded, abandoned, fenced, error).",
		}, []string{"kind", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "handler_duration_seconds",
			Help:    "Handler latency by kind.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"kind"}),
		leaderChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "leader_changes_total",
			Help: "Leadership transitions of this replica (acquired, lost).",
		}, []string{"transition"}),
		requeued: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "requeued_total",
			Help: "Items claimed by an earlier leader and put back by this one.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.isLeader, m.items, m.backlog, m.dispatched, m.latency, m.leaderChanges, m.requeued} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("scheduler: metrics already registered: %w", err)
			}
			return nil, fmt.Errorf("scheduler: register metrics: %w", err)
		}
	}
	return m, nil
}
