// Package oidc serves an OpenID Connect discovery document and a JWKS for
// a trust domain's JWT-SVID signing keys, so that relying parties that
// speak OIDC — Vault's jwt auth method first of all — can verify Signet
// JWT-SVIDs: point Vault's jwks_url at <issuer>/keys (or its
// oidc_discovery_url at the issuer, for JWT-SVIDs that carry a matching
// iss claim).
//
// Only keys JOSE can represent are published (ECDSA, RSA, Ed25519); ML-DSA
// keys of the pq and hybrid profiles are left out, as OIDC relying parties
// cannot use them.
package oidc

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Paths served below the issuer URL.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	KeysPath      = "/keys"
)

// KeySource returns the current JWT authorities by key ID (a
// *spiffebundle.Bundle's JWTAuthorities, e.g. from ca.Manager.Bundle()).
type KeySource func() map[string]crypto.PublicKey

// Config configures a Handler.
type Config struct {
	// Issuer is the URL the handler is reached at (no trailing slash),
	// e.g. http://127.0.0.1:8443. It is the discovery document's issuer
	// and the base of jwks_uri.
	Issuer string
	Keys   KeySource
	Logger *slog.Logger
}

// Handler serves the discovery document and the JWKS.
type Handler struct {
	cfg Config
	log *slog.Logger
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Keys == nil {
		return nil, errors.New("oidc: key source is required")
	}
	if !strings.HasPrefix(cfg.Issuer, "http://") && !strings.HasPrefix(cfg.Issuer, "https://") {
		return nil, fmt.Errorf("oidc: issuer %q must be an http(s) URL", cfg.Issuer)
	}
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: cfg.Logger}, nil
}

// discovery is the subset of OpenID Provider Metadata a JWT verifier needs.
type discovery struct {
	Issuer                string   `json:"issuer"`
	JWKSURI               string   `json:"jwks_uri"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	ResponseTypes         []string `json:"response_types_supported"`
	SubjectTypes          []string `json:"subject_types_supported"`
	IDTokenSigningAlgs    []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported       []string `json:"claims_supported,omitempty"`
	ScopesSupported       []string `json:"scopes_supported,omitempty"`
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case DiscoveryPath:
		h.write(w, discovery{
			Issuer:             h.cfg.Issuer,
			JWKSURI:            h.cfg.Issuer + KeysPath,
			ResponseTypes:      []string{"id_token"},
			SubjectTypes:       []string{"public"},
			IDTokenSigningAlgs: []string{"RS256", "ES256", "ES384", "ES512", "EdDSA"},
			ClaimsSupported:    []string{"sub", "aud", "exp", "iat"},
		})
	case KeysPath:
		h.write(w, h.jwks())
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) write(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		h.log.Error("oidc: encode response", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=60")
	_, _ = w.Write(b)
}

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
		k := jose.JSONWebKey{Key: keys[kid], KeyID: kid, Use: "sig"}
		if !k.Valid() {
			continue
		}
		if _, err := k.MarshalJSON(); err != nil {
			continue // not a JOSE key type (e.g. ML-DSA)
		}
		set.Keys = append(set.Keys, k)
	}
	return set
}

// Serve serves h on l until ctx is done.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("oidc: serve: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc //nolint:errcheck // http.ErrServerClosed after Shutdown
		return nil
	}
}
