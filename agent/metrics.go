package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type agentMetrics struct {
	attestations  prometheus.Counter
	agentRenewals prometheus.Counter
	svidsIssued   prometheus.Counter
	syncs         prometheus.Counter
	syncSeconds   prometheus.Histogram
	reconnects    prometheus.Counter
	pushes        *prometheus.CounterVec
	kex           *prometheus.CounterVec
	entryReads    prometheus.Counter
	renewOnly     prometheus.Counter
	// entriesReceived counts entries received in full: with
	// SyncAuthorizedEntries, only the new and changed ones.
	entriesReceived prometheus.Counter
	svidsEvicted    prometheus.Counter
}

func newAgentMetrics(reg prometheus.Registerer) agentMetrics {
	m := agentMetrics{
		attestations:  prometheus.NewCounter(prometheus.CounterOpts{Name: "signet_agent_attestations_total", Help: "Successful node attestations."}),
		agentRenewals: prometheus.NewCounter(prometheus.CounterOpts{Name: "signet_agent_svid_renewals_total", Help: "Agent SVID renewals."}),
		svidsIssued:   prometheus.NewCounter(prometheus.CounterOpts{Name: "signet_agent_workload_svids_issued_total", Help: "Workload X.509-SVIDs obtained from the server."}),
		syncs:         prometheus.NewCounter(prometheus.CounterOpts{Name: "signet_agent_syncs_total", Help: "Completed syncs with the server."}),
		syncSeconds:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "signet_agent_sync_seconds", Help: "Duration of a sync with the server.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		reconnects:    prometheus.NewCounter(prometheus.CounterOpts{Name: "signet_agent_server_reconnects_total", Help: "Server sessions that ended and were reopened."}),
		pushes:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "signet_agent_push_notifications_total", Help: "Push notifications received, by kind."}, []string{"kind"}),
		kex:           prometheus.NewCounterVec(prometheus.CounterOpts{Name: "signet_agent_tls_handshakes_total", Help: "TLS handshakes with servers, by negotiated key exchange group."}, []string{"group"}),
	}
	m.entryReads = prometheus.NewCounter(prometheus.CounterOpts{Name: "signet_agent_entry_reads_total", Help: "Reads of the authorized entries from the server."})
	m.renewOnly = prometheus.NewCounter(prometheus.CounterOpts{Name: "signet_agent_due_renewals_total", Help: "Renewals of only the due workload SVIDs, without a full sync."})
	m.entriesReceived = prometheus.NewCounter(prometheus.CounterOpts{Name: "signet_agent_entries_received_total", Help: "Registration entries received in full from the server (only new and changed ones once synced)."})
	m.svidsEvicted = prometheus.NewCounter(prometheus.CounterOpts{Name: "signet_agent_workload_svids_evicted_total", Help: "Workload X.509-SVIDs dropped from the bounded cache (x509_svid_cache_max_size), least recently used first."})
	reg.MustRegister(m.svidsEvicted, m.entriesReceived, m.renewOnly, m.entryReads, m.attestations, m.agentRenewals, m.svidsIssued, m.syncs, m.syncSeconds, m.reconnects, m.pushes, m.kex)
	return m
}

// svidExpiry exports the seconds until the agent SVID expires and until
// the soonest-expiring cached workload X.509-SVID does, computed at scrape
// time from the SVIDs the attestation, renewal and sync loops hold; each
// is absent while there is no such SVID.
type svidExpiry struct {
	a        *Agent
	desc     *prometheus.Desc
	workload *prometheus.Desc
}

func newSVIDExpiry(a *Agent) svidExpiry {
	return svidExpiry{a: a,
		desc: prometheus.NewDesc("signet_agent_svid_expiry_seconds",
			"Seconds until the agent SVID expires (negative once expired; absent before the first attestation).", nil, nil),
		workload: prometheus.NewDesc("signet_agent_workload_svid_expiry_seconds",
			"Seconds until the soonest-expiring cached workload X.509-SVID expires (negative once expired; absent with none cached).", nil, nil)}
}

func (c svidExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc; ch <- c.workload }

func (c svidExpiry) Collect(ch chan<- prometheus.Metric) {
	c.a.mu.Lock()
	s := c.a.agentSVID
	var soonest time.Time
	for _, w := range c.a.svids {
		if na := w.Chain[0].NotAfter; soonest.IsZero() || na.Before(soonest) {
			soonest = na
		}
	}
	c.a.mu.Unlock()
	now := c.a.cfg.Clock.Now()
	if s != nil {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, s.Chain[0].NotAfter.Sub(now).Seconds())
	}
	if !soonest.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.workload, prometheus.GaugeValue, soonest.Sub(now).Seconds())
	}
}
