package controller

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the controller's Prometheus series (namespace signet,
// subsystem k8s_controller).
type metrics struct {
	passes         *prometheus.CounterVec
	duration       prometheus.Histogram
	entryWrites    *prometheus.CounterVec
	renderFailures prometheus.Counter
	statusWrites   prometheus.Counter
	lastSuccess    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "signet", Subsystem: "k8s_controller", Name: name, Help: help}
	}
	m := &metrics{
		passes: prometheus.NewCounterVec(prometheus.CounterOpts(opts("reconciles_total",
			"Reconciliation passes, by result (ok or error).")), []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "signet", Subsystem: "k8s_controller",
			Name: "reconcile_duration_seconds", Help: "Duration of a reconciliation pass.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		entryWrites: prometheus.NewCounterVec(prometheus.CounterOpts(opts("entry_writes_total",
			"Entry writes to the server, by operation (create, update, delete, failed).")), []string{"op"}),
		renderFailures: prometheus.NewCounter(prometheus.CounterOpts(opts("render_failures_total",
			"Objects or pods whose entry did not render."))),
		statusWrites: prometheus.NewCounter(prometheus.CounterOpts(opts("status_writes_total",
			"Status subresource updates."))),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts(opts("last_success_timestamp_seconds",
			"Start time of the last reconciliation pass without error."))),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.passes, m.duration, m.entryWrites, m.renderFailures, m.statusWrites, m.lastSuccess} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("controller: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(start time.Time, took time.Duration, err error) {
	m.duration.Observe(took.Seconds())
	if err != nil {
		m.passes.WithLabelValues("error").Inc()
		return
	}
	m.passes.WithLabelValues("ok").Inc()
	m.lastSuccess.Set(float64(start.UnixNano()) / 1e9)
}

func (m *metrics) writes(r result) {
	m.entryWrites.WithLabelValues("create").Add(float64(r.created))
	m.entryWrites.WithLabelValues("update").Add(float64(r.updated))
	m.entryWrites.WithLabelValues("delete").Add(float64(r.deleted))
	m.entryWrites.WithLabelValues("failed").Add(float64(r.failed))
}
