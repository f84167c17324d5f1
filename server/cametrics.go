package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signet-id/signet/ca"
)

// caExpiry exports the seconds until the active X.509 and JWT authorities
// expire. The rotation loop stores the authorities it last saw
// (Server.authorities); the seconds are computed at scrape time, so they
// are current between rotations.
type caExpiry struct {
	s    *Server
	desc *prometheus.Desc
}

func newCAExpiry(s *Server) caExpiry {
	return caExpiry{s: s, desc: prometheus.NewDesc("signet_server_ca_expiry_seconds",
		"Seconds until the active CA authority expires, by kind (x509, jwt) and authority ID (negative once expired).",
		[]string{"kind", "authority_id"}, nil)}
}

func (c caExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c caExpiry) Collect(ch chan<- prometheus.Metric) {
	snap := c.s.authorities.Load()
	if snap == nil {
		return
	}
	now := c.s.cfg.Clock.Now()
	for _, a := range *snap {
		if a.Status != ca.StatusActive {
			continue
		}
		kind := "x509"
		if a.Kind == ca.KindJWT {
			kind = "jwt"
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, a.NotAfter.Sub(now).Seconds(), kind, a.ID)
	}
}
