package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/keymanager/kms"
	"github.com/signet-id/signet/ca/keymanager/transit"
	"github.com/signet-id/signet/secrets"
)

// Key manager kinds of KeyManagerConfig.
const (
	// KeyManagerKMS is a go.step.sm/crypto/kms URI: pkcs11, or (built with
	// -tags signet_cloudkms) awskms, cloudkms, azurekms.
	KeyManagerKMS = "kms"
	// KeyManagerVault is Vault's Transit engine over the `vault` block's
	// connection (SPIRE's KeyManager "hashicorp_vault").
	KeyManagerVault = "hashicorp_vault"
)

// KeyManagerConfig selects where the CA and JWT signing keys are created
// and held (docs/key-custody.md). Without one they are in the CA state.
type KeyManagerConfig struct {
	// Kind is KeyManagerKMS or KeyManagerVault.
	Kind string
	// URI opens a kms key manager; its PIN comes from pin-source (a file
	// or env:NAME), never from the URI itself.
	URI string
	// KeyRing is Cloud KMS's key ring for new keys (cloudkms only).
	KeyRing string
	// TransitMount is the Transit engine's mount (default transit).
	TransitMount string
}

// UpstreamDiskConfig is an operator-provided CA that signs Signet's
// intermediate (SPIRE's UpstreamAuthority "disk").
type UpstreamDiskConfig struct {
	CertFile   string
	KeyFile    string
	BundleFile string
}

// UpstreamSPIREConfig is an upstream SPIRE server that signs Signet's
// intermediate through a downstream entry (SPIRE's UpstreamAuthority
// "spire").
type UpstreamSPIREConfig struct {
	ServerAddress     string
	ServerPort        int
	WorkloadAPISocket string
}

// keyManagerOpenTimeout bounds opening a key manager at start.
const keyManagerOpenTimeout = 30 * time.Second

// openKeyManager opens the configured key manager (nil without one) and
// returns the function that releases it.
func (s *Server) openKeyManager(vc *secrets.Client) (ca.KeyManager, func(), error) {
	c := s.cfg.KeyManager
	if c == nil {
		return nil, func() {}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyManagerOpenTimeout)
	defer cancel()
	switch c.Kind {
	case KeyManagerKMS:
		km, err := kms.Open(ctx, kms.Config{URI: c.URI, KeyRing: c.KeyRing})
		if err != nil {
			return nil, nil, fmt.Errorf("server: KeyManager %q: %w", c.Kind, err)
		}
		s.log.Info("CA keys are held by a key manager", "key_manager", km.Kind(), "uri", km.URI())
		return km, func() { _ = km.Close() }, nil
	case KeyManagerVault:
		if vc == nil {
			return nil, nil, errors.New("server: KeyManager \"hashicorp_vault\" needs the `vault` block (address and auth) to reach Vault")
		}
		if s.cfg.Vault.Auth == "jwt" {
			return nil, nil, errors.New("server: KeyManager \"hashicorp_vault\" cannot log in to Vault with auth \"jwt\": that JWT-SVID would be signed by a key held in Vault; use auth \"token\" or \"approle\"")
		}
		km, err := transit.New(vc, c.TransitMount)
		if err != nil {
			return nil, nil, fmt.Errorf("server: %w", err)
		}
		if err := km.Check(ctx); err != nil {
			return nil, nil, fmt.Errorf("server: KeyManager \"hashicorp_vault\": %w", err)
		}
		s.log.Info("CA keys are held by a key manager", "key_manager", km.Kind(), "transit_mount", c.TransitMount)
		return km, func() {}, nil
	}
	return nil, nil, fmt.Errorf("server: unknown key manager kind %q (use %q or %q)", c.Kind, KeyManagerKMS, KeyManagerVault)
}
