package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/clock"
)

// Notifier is told of every change of the trust domain's bundle and
// publishes it somewhere (SPIRE's server Notifier plugins, e.g.
// k8s/k8sbundle). Run runs for the server's lifetime; BundleChanged must
// not block.
type Notifier interface {
	Run(ctx context.Context)
	BundleChanged()
}

// NotifierHost is what the server gives a notifier it builds.
type NotifierHost struct {
	// X509Authorities returns the bundle's current X.509 authorities.
	X509Authorities func() []*x509.Certificate
	// Leader reports whether this replica leads the rotation scheduler:
	// with several replicas only the leader should publish.
	Leader   func() bool
	Clock    clock.Clock
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// NotifierFactory builds a notifier when the server starts, once its CA
// is loaded. Name names it in logs and errors (e.g. k8sbundle).
type NotifierFactory struct {
	Name string
	New  func(NotifierHost) (Notifier, error)
}

// startNotifiers builds the configured notifiers as subsystems.
func (s *Server) startNotifiers() ([]subsystem, error) {
	var subs []subsystem
	for _, f := range s.cfg.Notifiers {
		n, err := f.New(NotifierHost{
			X509Authorities: func() []*x509.Certificate { return s.ca.Bundle().X509Authorities() },
			Leader:          s.isLeader,
			Clock:           s.cfg.Clock,
			Logger:          s.log.With("notifier", f.Name),
			Registry:        s.cfg.Registry,
		})
		if err != nil {
			return nil, fmt.Errorf("server: Notifier %q: %w", f.Name, err)
		}
		s.notifiers = append(s.notifiers, n)
		subs = append(subs, loop("notifier "+f.Name, n.Run))
	}
	return subs, nil
}

// notifyBundleChanged tells every notifier the bundle changed.
func (s *Server) notifyBundleChanged() {
	for _, n := range s.notifiers {
		n.BundleChanged()
	}
}
