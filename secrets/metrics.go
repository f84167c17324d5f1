package secrets

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts broker activity. Labels carry no secret, path or
// identity: only the operation and its outcome.
type metrics struct {
	reads   *prometheus.CounterVec // op: kv2_read, kv2_poll, leased_read, renew, revoke; result: ok, denied, not_found, unavailable, error
	watched prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signet_secrets_vault_operations_total",
			Help: "Vault operations of the secrets broker, by operation and result.",
		}, []string{"op", "result"}),
		watched: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signet_secrets_watched",
			Help: "Secrets (per policy and SPIFFE ID) the broker keeps current.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.reads, m.watched} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(op string, err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, ErrVaultDenied):
		result = "denied"
	case errors.Is(err, ErrVaultNotFound):
		result = "not_found"
	case errors.Is(err, ErrVaultUnavailable):
		result = "unavailable"
	default:
		result = "error"
	}
	m.reads.WithLabelValues(op, result).Inc()
}
