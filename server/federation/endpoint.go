package federation

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/signet-id/signet/clock"
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

// Serve serves h over TLS on lis until ctx is done, then shuts down
// (forcibly after grace).
func Serve(ctx context.Context, lis net.Listener, tc *tls.Config, h http.Handler, grace time.Duration) error {
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(lis, tc)) }()
	select {
	case err := <-errc:
		return fmt.Errorf("federation: bundle endpoint: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("federation: bundle endpoint: %w", err)
	}
	return nil
}

// CertFile is the https_web profile's serving certificate, read from PEM
// files and re-read every SyncInterval (SPIRE's file_sync_interval).
type CertFile struct {
	CertPath, KeyPath string
	SyncInterval      time.Duration
	Clock             clock.Clock
	Logger            *slog.Logger

	mu     sync.Mutex
	cert   *tls.Certificate
	loaded time.Time
}

// Load reads the files now; it fails when they are missing or do not form
// a key pair.
func (c *CertFile) Load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loadLocked()
}

func (c *CertFile) loadLocked() error {
	pair, err := tls.LoadX509KeyPair(c.CertPath, c.KeyPath)
	if err != nil {
		return fmt.Errorf("federation: serving_cert_file %s / %s: %w", c.CertPath, c.KeyPath, err)
	}
	c.cert, c.loaded = &pair, clock.Or(c.Clock).Now()
	return nil
}

// GetCertificate returns the certificate, re-reading the files when the
// sync interval elapsed (a failed re-read keeps the previous pair).
func (c *CertFile) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil || (c.SyncInterval > 0 && clock.Since(clock.Or(c.Clock), c.loaded) >= c.SyncInterval) {
		if err := c.loadLocked(); err != nil && c.cert == nil {
			return nil, err
		} else if err != nil && c.Logger != nil {
			c.Logger.Warn("bundle endpoint serving certificate not reloaded; serving the previous one", "error", err)
		}
	}
	return c.cert, nil
}
