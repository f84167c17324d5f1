// Package oidcdiscovery is the server's OIDC discovery provider: it serves
// an OpenID Connect discovery document and a JWKS of the trust domain's
// JWT-SVID signing keys, so that relying parties that speak OIDC (Vault's
// jwt auth, cloud token services, go-oidc) verify JWT-SVIDs whose iss
// claim is the provider's issuer (docs/oidc.md). It is SPIRE's
// oidc-discovery-provider built into the server.
//
// Only keys JOSE can represent are published (ECDSA, RSA, Ed25519); ML-DSA
// keys of the pq and hybrid profiles are left out, as OIDC relying parties
// cannot use them.
package oidcdiscovery

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/signet-id/signet/telemetry"
)

// Paths served below the issuer URL's path.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	KeysPath      = "/keys"
)

// KeySource returns the current JWT authorities by key ID (a
// *spiffebundle.Bundle's JWTAuthorities, e.g. from ca.Manager.Bundle()).
type KeySource func() map[string]crypto.PublicKey

// Config configures a Handler.
type Config struct {
	// Issuer is the provider's URL, e.g. https://oidc.example.org: the
	// discovery document's issuer, which relying parties compare with the
	// iss claim of JWT-SVIDs. The documents are served below its path.
	Issuer string
	// JWKSURI is published as jwks_uri; empty: Issuer + KeysPath.
	JWKSURI string
	// Domains, if set, are the host names requests may carry (Host header,
	// port ignored); discovery and key requests for another host are
	// refused with 400, as SPIRE's domains. Empty accepts any host.
	Domains []string
	// SetKeyUse sets "use":"sig" on every published key (SPIRE's
	// set_key_use); some relying parties require it.
	SetKeyUse bool
	Keys      KeySource
	// LivePath and ReadyPath, if set, serve SPIRE's health checks on the
	// same listener (any host): live while serving, ready while the JWKS
	// holds at least one key.
	LivePath, ReadyPath string
	Logger              *slog.Logger
}

// Handler serves the discovery document and the JWKS.
type Handler struct {
	cfg       Config
	log       *slog.Logger
	discovery []byte
	mux       *http.ServeMux
}

var _ http.Handler = (*Handler)(nil)

// discovery is the subset of OpenID Provider Metadata a JWT verifier needs.
type discovery struct {
	Issuer                string   `json:"issuer"`
	JWKSURI               string   `json:"jwks_uri"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	ResponseTypes         []string `json:"response_types_supported"`
	SubjectTypes          []string `json:"subject_types_supported"`
	IDTokenSigningAlgs    []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported       []string `json:"claims_supported,omitempty"`
}

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Keys == nil {
		return nil, errors.New("oidcdiscovery: key source is required")
	}
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	iu, err := checkURL("issuer", cfg.Issuer)
	if err != nil {
		return nil, err
	}
	if cfg.JWKSURI == "" {
		cfg.JWKSURI = cfg.Issuer + KeysPath
	} else if _, err := checkURL("jwks_uri", cfg.JWKSURI); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	doc, err := json.Marshal(discovery{
		Issuer:             cfg.Issuer,
		JWKSURI:            cfg.JWKSURI,
		ResponseTypes:      []string{"id_token"},
		SubjectTypes:       []string{"public"},
		IDTokenSigningAlgs: []string{"RS256", "ES256", "ES384", "ES512", "EdDSA"},
		ClaimsSupported:    []string{"iss", "sub", "aud", "exp", "iat"},
	})
	if err != nil {
		return nil, fmt.Errorf("oidcdiscovery: encode discovery document: %w", err)
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, discovery: doc, mux: http.NewServeMux()}
	prefix := iu.Path
	paths := []string{prefix + DiscoveryPath, prefix + KeysPath}
	if cfg.LivePath != "" || cfg.ReadyPath != "" {
		paths = append(paths, cfg.LivePath, cfg.ReadyPath)
	}
	for i, p := range paths {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "{} ") || slices.Contains(paths[:i], p) {
			return nil, fmt.Errorf("oidcdiscovery: path %q is not a distinct absolute path (the documents are served at %s and %s; health checks need their own paths)", p, paths[0], paths[1])
		}
	}
	h.mux.Handle(prefix+DiscoveryPath, h.forDomains(func(w http.ResponseWriter) { h.write(w, h.discovery) }))
	h.mux.Handle(prefix+KeysPath, h.forDomains(func(w http.ResponseWriter) {
		b, err := json.Marshal(h.jwks())
		if err != nil {
			h.log.Error("oidcdiscovery: encode JWKS", "error", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		h.write(w, b)
	}))
	if cfg.LivePath != "" || cfg.ReadyPath != "" {
		telemetry.HandleHealth(h.mux, cfg.LivePath, cfg.ReadyPath, h.Ready)
	}
	return h, nil
}

// checkURL accepts an absolute http(s) URL with a host and no user info,
// query or fragment.
func checkURL(what, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("oidcdiscovery: %s %q must be an http(s) URL with a host and no user info, query or fragment", what, s)
	}
	return u, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// forDomains refuses requests whose Host is not one of the domains.
func (h *Handler) forDomains(serve func(http.ResponseWriter)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(h.cfg.Domains) > 0 {
			host := r.Host
			if hh, _, err := net.SplitHostPort(host); err == nil {
				host = hh
			}
			if !slices.ContainsFunc(h.cfg.Domains, func(d string) bool { return strings.EqualFold(d, host) }) {
				http.Error(w, fmt.Sprintf("host %q is not one of this provider's domains", host), http.StatusBadRequest)
				return
			}
		}
		serve(w)
	})
}

func (h *Handler) write(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=60")
	_, _ = w.Write(b)
}

// Ready reports whether the JWKS holds at least one key.
func (h *Handler) Ready() bool { return len(h.jwks().Keys) > 0 }

// jwks returns the representable keys, ordered by key ID.
func (h *Handler) jwks() jose.JSONWebKeySet {
	keys := h.cfg.Keys()
	kids := make([]string, 0, len(keys))
	for kid := range keys {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, kid := range kids {
		alg := algorithm(keys[kid])
		if alg == "" {
			continue // not a JOSE key type (e.g. ML-DSA)
		}
		k := jose.JSONWebKey{Key: keys[kid], KeyID: kid, Algorithm: alg}
		if h.cfg.SetKeyUse {
			k.Use = "sig"
		}
		if !k.Valid() {
			continue
		}
		set.Keys = append(set.Keys, k)
	}
	return set
}

// algorithm is the JWS algorithm a key signs JWT-SVIDs with, "" for a key
// JOSE cannot represent.
func algorithm(k crypto.PublicKey) string {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return string(jose.ES256)
		case elliptic.P384():
			return string(jose.ES384)
		case elliptic.P521():
			return string(jose.ES512)
		}
	case *rsa.PublicKey:
		return string(jose.RS256)
	case ed25519.PublicKey:
		return string(jose.EdDSA)
	}
	return ""
}
