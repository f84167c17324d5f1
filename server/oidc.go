package server

import (
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/server/oidcdiscovery"
	"github.com/signet-id/signet/tlspolicy"
)

// OIDCConfig is the OIDC discovery provider: the discovery document and
// JWKS of the JWT-SVID keys (docs/oidc.md), the configuration file's
// oidc_discovery_provider block.
type OIDCConfig struct {
	// Address is the listener's host:port.
	Address string
	// Issuer is the issuer URL relying parties are configured with and
	// JWT-SVIDs carry as iss. Empty: https://<first domain>, or with no
	// domains https://localhost:<port> (the server SVID names localhost),
	// for a relying party on this host.
	Issuer string
	// JWKSURI is the published jwks_uri; empty: Issuer + /keys.
	JWKSURI string
	// Domains are the host names requests may carry (empty: any).
	Domains []string
	// SetKeyUse adds "use":"sig" to every key.
	SetKeyUse bool
	// InsecureHTTP serves plain HTTP, for a TLS-terminating proxy in front
	// (the issuer stays https unless set otherwise).
	InsecureHTTP bool
	// RequirePQ refuses classical key exchange. By default X25519MLKEM768
	// is preferred and X25519 and P-256 are accepted, because the
	// documents are public and fetched by clients Signet does not control.
	RequirePQ bool
	// CertFile and KeyFile are the serving certificate (PEM), re-read every
	// FileSyncInterval; empty: the server's SVID.
	CertFile, KeyFile string
	FileSyncInterval  time.Duration
	// LivePath and ReadyPath, if set, serve health checks on the listener.
	LivePath, ReadyPath string
}

// checkOIDC validates the OIDC settings of cfg before anything starts
// (signet server validate runs it) and fills the issuer from the domains.
func checkOIDC(cfg *Config) error {
	if cfg.OIDC == nil {
		if cfg.JWTIssuer != "" {
			if _, err := oidcdiscovery.New(oidcdiscovery.Config{Issuer: cfg.JWTIssuer, Keys: noKeys}); err != nil {
				return fmt.Errorf("server: jwt_issuer: %w", err)
			}
		}
		return nil
	}
	o := new(OIDCConfig)
	*o = *cfg.OIDC // the caller's copy stays as given
	cfg.OIDC = o
	const block = "server: oidc_discovery_provider: "
	if _, _, err := net.SplitHostPort(o.Address); err != nil {
		return fmt.Errorf(block+"listen_address %q is not host:port (e.g. 0.0.0.0:8443): %w", o.Address, err)
	}
	if o.InsecureHTTP && (o.CertFile != "" || o.KeyFile != "") {
		return errors.New(block + "allow_insecure_http serves plain HTTP and takes no serving_cert_file; drop one of them")
	}
	if o.InsecureHTTP && o.RequirePQ {
		return errors.New(block + "require_pq_key_exchange needs TLS, but allow_insecure_http serves plain HTTP: require post-quantum key exchange on the proxy in front instead")
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New(block + "serving_cert_file needs both cert_file_path and key_file_path")
	}
	if o.CertFile != "" {
		cf := tlspolicy.CertFile{CertPath: o.CertFile, KeyPath: o.KeyFile}
		if err := cf.Load(); err != nil {
			return fmt.Errorf(block+"serving_cert_file: %w", err)
		}
	}
	if o.Issuer == "" && len(o.Domains) > 0 {
		o.Issuer = "https://" + o.Domains[0]
	}
	issuer := o.Issuer
	if issuer == "" {
		issuer = "https://localhost" // the port is known once listening
	}
	if strings.HasPrefix(issuer, "http://") && !o.InsecureHTTP {
		return fmt.Errorf(block+"issuer %q is plain http but the provider serves TLS: use https, or set allow_insecure_http for a local test", issuer)
	}
	if _, err := oidcdiscovery.New(providerConfig(o, issuer)); err != nil {
		return fmt.Errorf(block+"%w", err)
	}
	o.Issuer = strings.TrimRight(o.Issuer, "/")
	if cfg.JWTIssuer != "" && o.Issuer != "" {
		if strings.TrimRight(cfg.JWTIssuer, "/") != o.Issuer {
			return fmt.Errorf("server: jwt_issuer %q differs from the oidc_discovery_provider issuer %q: relying parties that read the discovery document (go-oidc, cloud token services) would refuse the JWT-SVIDs; set the same URL or leave jwt_issuer unset", cfg.JWTIssuer, o.Issuer)
		}
		cfg.JWTIssuer = o.Issuer // iss must equal the published issuer byte for byte
	}
	return nil
}

func noKeys() map[string]crypto.PublicKey { return nil }

func providerConfig(o *OIDCConfig, issuer string) oidcdiscovery.Config {
	return oidcdiscovery.Config{
		Issuer: issuer, JWKSURI: o.JWKSURI, Domains: o.Domains, SetKeyUse: o.SetKeyUse,
		LivePath: o.LivePath, ReadyPath: o.ReadyPath, Keys: noKeys,
	}
}

// listenOIDC opens the provider's listener and settles its issuer, before
// the issuer of JWT-SVIDs is built; close (never nil) closes the listener.
func (s *Server) listenOIDC() (closeLis func(), err error) {
	o := s.cfg.OIDC
	if o == nil {
		return func() {}, nil
	}
	lis, err := net.Listen("tcp", o.Address)
	if err != nil {
		return nil, fmt.Errorf("server: oidc_discovery_provider listener %s: %w (choose another listen_address or --oidc-address)", o.Address, err)
	}
	s.oidcLis = lis
	s.oidcIssuer = strings.TrimRight(o.Issuer, "/")
	if s.oidcIssuer == "" {
		scheme := "https"
		if o.InsecureHTTP {
			scheme = "http"
		}
		_, port, _ := net.SplitHostPort(lis.Addr().String())
		s.oidcIssuer = scheme + "://localhost:" + port
	}
	return func() { _ = lis.Close() }, nil
}

// jwtIssuer is the iss claim of JWT-SVIDs.
func (s *Server) jwtIssuer() string {
	if s.cfg.JWTIssuer != "" {
		return s.cfg.JWTIssuer
	}
	return s.oidcIssuer
}

// startOIDC builds the provider on its open listener: plain HTTP, or TLS
// with tlspolicy.Public and the configured certificate or the server SVID.
func (s *Server) startOIDC() (subsystem, error) {
	o := s.cfg.OIDC
	pc := providerConfig(o, s.oidcIssuer)
	pc.Keys = func() map[string]crypto.PublicKey { return s.ca.Bundle().JWTAuthorities() }
	pc.Logger = s.log.With("component", "oidc discovery provider")
	h, err := oidcdiscovery.New(pc)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	var tc *tls.Config
	if !o.InsecureHTTP {
		tc = tlspolicy.Public(o.RequirePQ)
		tc.GetCertificate = s.svidCertificate
		if o.CertFile != "" {
			cf := &tlspolicy.CertFile{CertPath: o.CertFile, KeyPath: o.KeyFile, SyncInterval: o.FileSyncInterval, Clock: s.cfg.Clock, Logger: pc.Logger}
			if err := cf.Load(); err != nil {
				return nil, fmt.Errorf("server: oidc_discovery_provider: serving_cert_file: %w", err)
			}
			tc.GetCertificate = cf.GetCertificate
		}
		handshakes := prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signet_server_oidc_tls_handshakes_total",
			Help: "TLS handshakes on the OIDC discovery provider's listener, by negotiated key exchange group.",
		}, []string{"group"})
		if err := s.cfg.Registry.Register(handshakes); err != nil {
			return nil, fmt.Errorf("server: oidc metrics: %w", err)
		}
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			handshakes.WithLabelValues(cs.CurveID.String()).Inc()
			return nil
		}
	}
	s.log.Info("serving the OIDC discovery provider", "address", s.oidcLis.Addr().String(), "issuer", s.oidcIssuer,
		"tls", tc != nil, "require_pq_key_exchange", o.RequirePQ)
	return httpListener{name: "OIDC discovery provider", lis: s.oidcLis, tls: tc, h: h, log: pc.Logger}, nil
}

// svidCertificate is the server's current SVID as a serving certificate.
func (s *Server) svidCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := s.serverCert.Load()
	if c == nil {
		return nil, errors.New("server: no server SVID yet")
	}
	return c, nil
}

// OIDCIssuer returns the OIDC issuer URL once Ready, or "" if not served.
func (s *Server) OIDCIssuer() string { return s.oidcIssuer }

// OIDCAddr returns the OIDC discovery provider's address once Ready, nil
// when none is served.
func (s *Server) OIDCAddr() *net.TCPAddr {
	if s.oidcLis == nil {
		return nil
	}
	return s.oidcLis.Addr().(*net.TCPAddr)
}
