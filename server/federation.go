package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/server/store"
	"github.com/signet-id/signet/tlspolicy"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
)

// FederationConfig configures SPIFFE federation: the bundle endpoint this
// server serves, and relationships from the configuration file (besides
// those of the TrustDomain API, which they override).
type FederationConfig struct {
	// BundleEndpoint, if set, serves the trust domain's bundle.
	BundleEndpoint *BundleEndpointConfig
	// FederatesWith are static relationships.
	FederatesWith []federation.Relationship
	// WebRoots verify https_web endpoints (nil: the system roots).
	WebRoots *x509.CertPool
	// MinRefresh is the shortest refresh interval honoured whatever a
	// bundle's refresh hint (default 1m, as SPIRE).
	MinRefresh time.Duration
	// Retry bounds the wait before retrying a failed fetch (default 30s).
	Retry time.Duration
	// ReloadInterval is how often relationships are re-read (default 10s).
	ReloadInterval time.Duration
}

// BundleEndpointConfig is the SPIFFE bundle endpoint server.
type BundleEndpointConfig struct {
	// Address is host:port.
	Address string
	// RefreshHint is published in the bundle (default 5m).
	RefreshHint time.Duration
	// Profile is https_spiffe (the server's SVID, the server's TLS key
	// exchange policy) or https_web (CertFile and KeyFile; classical key
	// exchange accepted so that any Web PKI client can fetch).
	Profile          federation.Profile
	CertFile         string
	KeyFile          string
	FileSyncInterval time.Duration
}

func (s *Server) newRefresher() error {
	f := s.cfg.Federation
	r, err := federation.New(federation.Config{
		TrustDomain:    s.cfg.TrustDomain,
		Store:          s.store,
		NotFound:       store.ErrNotFound,
		Static:         f.FederatesWith,
		Leader:         s.SchedulerLeader,
		LocalBundle:    func() *spiffebundle.Bundle { return s.ca.Bundle() },
		WebRoots:       f.WebRoots,
		MinRefresh:     f.MinRefresh,
		Retry:          f.Retry,
		ReloadInterval: f.ReloadInterval,
		Clock:          s.cfg.Clock,
		Logger:         s.log,
		Registry:       s.cfg.Registry,
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.refresher = r
	return nil
}

// startBundleEndpoint opens the bundle endpoint's listener.
func (s *Server) startBundleEndpoint() (subsystem, net.Listener, error) {
	be := s.cfg.Federation.BundleEndpoint
	var tc *tls.Config
	switch be.Profile {
	case federation.ProfileSPIFFE, "":
		tc = s.cfg.TLS.Config()
		tc.GetCertificate = s.svidCertificate
	case federation.ProfileWeb:
		cf := &tlspolicy.CertFile{CertPath: be.CertFile, KeyPath: be.KeyFile, SyncInterval: be.FileSyncInterval, Clock: s.cfg.Clock, Logger: s.log.With("component", "bundle endpoint")}
		if err := cf.Load(); err != nil {
			return nil, nil, fmt.Errorf("server: bundle endpoint: serving_cert_file: %w", err)
		}
		// Web PKI clients (browsers, curl, SPIRE built with an older Go)
		// may lack X25519MLKEM768; the bundle is public, so classical key
		// exchange is accepted here, hybrid still preferred.
		tc = tlspolicy.Public(false)
		tc.GetCertificate = cf.GetCertificate
	default:
		return nil, nil, fmt.Errorf("server: bundle endpoint profile %q is not supported (use https_spiffe or https_web)", be.Profile)
	}
	h, err := federation.NewHandler(federation.EndpointConfig{
		TrustDomain: s.cfg.TrustDomain,
		Bundle:      func() *spiffebundle.Bundle { return s.ca.Bundle() },
		RefreshHint: be.RefreshHint,
		Logger:      s.log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("server: %w", err)
	}
	lis, err := net.Listen("tcp", be.Address)
	if err != nil {
		return nil, nil, fmt.Errorf("server: bundle endpoint listener %s: %w (choose another federation.bundle_endpoint address or port)", be.Address, err)
	}
	addr := lis.Addr().(*net.TCPAddr)
	s.bundleEndpointAddr.Store(addr)
	s.log.Info("serving the SPIFFE bundle endpoint", "address", addr.String(), "bundle_endpoint_profile", string(be.Profile))
	return httpListener{name: "bundle endpoint", lis: lis, tls: tc, h: h, log: s.log.With("component", "bundle endpoint")}, lis, nil
}

// BundleEndpointAddr returns the bundle endpoint's address once Ready, nil
// when none is served.
func (s *Server) BundleEndpointAddr() *net.TCPAddr { return s.bundleEndpointAddr.Load() }

// Refresher returns the federated bundle refresher (for tests and tools).
func (s *Server) Refresher() *federation.Refresher { return s.refresher }
