package federation

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// EndpointConfig configures the bundle endpoint server.
type EndpointConfig struct {
	TrustDomain spiffeid.TrustDomain
	// Bundle returns the trust domain's current bundle.
	Bundle func() *spiffebundle.Bundle
	// RefreshHint is published in the served bundle (default
	// DefaultRefreshHint).
	RefreshHint time.Duration
	Logger      *slog.Logger
}

// bundleSource serves the current bundle with the configured refresh hint.
type bundleSource struct {
	cfg EndpointConfig
}

var _ spiffebundle.Source = bundleSource{}

func (s bundleSource) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	if td != s.cfg.TrustDomain {
		return nil, fmt.Errorf("federation: no bundle for trust domain %q", td)
	}
	b := s.cfg.Bundle().Clone()
	b.SetRefreshHint(s.cfg.RefreshHint)
	return b, nil
}

// NewHandler returns the bundle endpoint's HTTP handler: GET returns the
// trust domain's SPIFFE bundle JSON (go-spiffe's federation handler).
func NewHandler(cfg EndpointConfig) (http.Handler, error) {
	if cfg.Bundle == nil || cfg.TrustDomain.IsZero() {
		return nil, errors.New("federation: bundle endpoint needs a trust domain and a bundle")
	}
	if cfg.RefreshHint <= 0 {
		cfg.RefreshHint = DefaultRefreshHint
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h, err := federation.NewHandler(cfg.TrustDomain, bundleSource{cfg})
	if err != nil {
		return nil, fmt.Errorf("federation: %w", err)
	}
	return h, nil
}
