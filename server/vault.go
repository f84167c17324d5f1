package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/signet-id/signet/issuer"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/secrets"
	"github.com/signet-id/signet/secrets/vaultpki"
	secretsapi "github.com/signet-id/signet/server/api/secrets"
	"github.com/signet-id/signet/spireid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// VaultConfig connects the server to Vault, the secrets it brokers.
type VaultConfig struct {
	// Address is Vault's URL, e.g. https://vault.example:8200.
	Address   string
	Namespace string
	// CAFile verifies Vault's certificate (PEM); empty uses system roots.
	CAFile string
	// Auth is token, approle or jwt (a JWT-SVID of the server, minted for
	// audience "vault", via Vault's jwt auth method).
	Auth string
	// TokenFile holds a Vault token (auth token).
	TokenFile string
	// RoleID and SecretIDFile are the AppRole credentials (auth approle).
	RoleID       string
	SecretIDFile string
	// JWTRole and JWTMount select the jwt auth role and mount (auth jwt).
	JWTRole  string
	JWTMount string
	// UpstreamPKIMount, if set, makes Vault's PKI engine at this mount the
	// upstream authority: it signs Signet's intermediate CA, and the bundle
	// carries Vault's root (classic profile).
	UpstreamPKIMount string
}

func readSecretFile(what, path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("server: vault: %s file is required", what)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("server: vault: %s: %w", what, err)
	}
	return strings.TrimSpace(string(data)), nil
}

// vaultAuth builds the Vault login method from the configuration. Secrets
// are read from files so they never appear in flags or process listings.
func (s *Server) vaultAuth(v *VaultConfig) (secrets.Auth, error) {
	switch v.Auth {
	case "token":
		tok, err := readSecretFile("token", v.TokenFile)
		if err != nil {
			return nil, err
		}
		return secrets.TokenAuth{Token: tok}, nil
	case "approle":
		sid, err := readSecretFile("AppRole secret ID", v.SecretIDFile)
		if err != nil {
			return nil, err
		}
		if v.RoleID == "" {
			return nil, errors.New("server: vault: approle auth needs role_id")
		}
		return secrets.AppRoleAuth{RoleID: v.RoleID, SecretID: sid}, nil
	case "jwt":
		if v.JWTRole == "" {
			return nil, errors.New("server: vault: jwt auth needs jwt_role")
		}
		return secrets.JWTAuth{Mount: v.JWTMount, Role: v.JWTRole, Token: func(context.Context) (string, error) {
			tok, _, err := s.issuer.JWTSVID(issuer.JWTParams{ID: spireid.ServerID(s.cfg.TrustDomain), Audience: []string{"vault"}})
			return tok, err
		}}, nil
	}
	return nil, fmt.Errorf("server: vault: unknown auth method %q (use token, approle or jwt)", v.Auth)
}

// newVaultClient builds the server's Vault client (it logs in on first use).
func (s *Server) newVaultClient() (*secrets.Client, error) {
	v := s.cfg.Vault
	auth, err := s.vaultAuth(v)
	if err != nil {
		return nil, err
	}
	var tc *tls.Config
	if v.CAFile != "" {
		pem, err := os.ReadFile(v.CAFile)
		if err != nil {
			return nil, fmt.Errorf("server: vault CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("server: vault CA %s holds no PEM certificates", v.CAFile)
		}
		tc = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	vc, err := secrets.NewClient(secrets.ClientConfig{Address: v.Address, Namespace: v.Namespace, TLS: tc, Auth: auth, Clock: s.cfg.Clock, Logger: s.log.With("component", "vault")})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return vc, nil
}

// vaultUpstream adapts Vault PKI to ca.UpstreamAuthority.
type vaultUpstream struct{ u *vaultpki.Upstream }

func (v vaultUpstream) SignIntermediate(ctx context.Context, td spiffeid.TrustDomain, csr []byte, ttl time.Duration) ([]*x509.Certificate, []*x509.Certificate, error) {
	signed, err := v.u.SignIntermediate(ctx, td, csr, ttl)
	if err != nil {
		return nil, nil, err
	}
	return signed.Chain, signed.Roots, nil
}

// startSecrets builds the secrets API over the Vault client. It returns
// its subsystems (the Vault token keeper, the policy watch and the lease
// kicks) and a cleanup function.
func (s *Server) startSecrets(vc *secrets.Client, app *eventlog.Appender) (subs []subsystem, cleanup func(), err error) {
	broker, err := secrets.NewBroker(secrets.BrokerConfig{
		Client: vc, Events: app, Actor: spireid.ServerID(s.cfg.TrustDomain).String(), Registerer: s.cfg.Registry,
		Clock: s.cfg.Clock, Logger: s.log.With("component", "secrets"), Scheduler: leaseScheduler{s},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("server: %w", err)
	}
	s.leases = broker
	policies, err := secrets.NewPolicyStore(s.etcd, s.cfg.TrustDomain, secrets.WithPolicyPrefix(s.keys().SecretPolicies()))
	if err != nil {
		broker.Close()
		return nil, nil, fmt.Errorf("server: %w", err)
	}
	s.secrets, err = secretsapi.New(secretsapi.Config{TrustDomain: s.cfg.TrustDomain, Store: s.store, Policies: policies, Broker: broker, Clock: s.cfg.Clock, Logger: s.log})
	if err != nil {
		broker.Close()
		return nil, nil, fmt.Errorf("server: %w", err)
	}
	subs = []subsystem{
		loop("vault token", func(ctx context.Context) { _ = vc.Run(ctx) }),
		loop("secret policy watch", func(ctx context.Context) { _ = s.secrets.Run(ctx) }),
		loop("lease kicks", s.watchLeaseKicks),
	}
	return subs, broker.Close, nil
}
