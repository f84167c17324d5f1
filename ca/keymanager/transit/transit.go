// Package transit is a ca.KeyManager over Vault's Transit secrets engine
// (SPIRE's KeyManager "hashicorp_vault"): each authority's key is a
// non-exportable ecdsa-p256 Transit key, and every signature is a
// transit/sign call with the digest, so the private key never leaves
// Vault.
package transit

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/signet-id/signet/ca"
)

// Client is the logged-in Vault client the key manager calls
// (secrets.Client).
type Client interface {
	API(ctx context.Context) (*vault.Client, error)
}

// KeyManager creates and signs with keys in one Transit mount.
type KeyManager struct {
	client Client
	mount  string
}

var (
	_ ca.KeyManager = (*KeyManager)(nil)
	_ ca.KeyDeleter = (*KeyManager)(nil)
)

// errNoMount: the mount named in the config is not a transit engine.
var errNoMount = errors.New("no transit secrets engine is mounted there")

// Kind is the key manager's kind, SPIRE's plugin name.
const Kind = "hashicorp_vault"

// New returns a key manager over the Transit engine mounted at mount
// (default "transit").
func New(client Client, mount string) (*KeyManager, error) {
	if client == nil {
		return nil, errors.New("transit: a Vault client is required")
	}
	mount = strings.Trim(mount, "/")
	if mount == "" {
		mount = "transit"
	}
	return &KeyManager{client: client, mount: mount}, nil
}

// Kind implements ca.KeyManager.
func (k *KeyManager) Kind() string { return Kind }

// Check reads the mount's configuration, so a server with a missing mount
// or a token without access refuses to start.
func (k *KeyManager) Check(ctx context.Context) error {
	api, err := k.client.API(ctx)
	if err != nil {
		return fmt.Errorf("transit: %w", err)
	}
	// A LIST under a missing mount answers 404, which vault/api turns into
	// (nil, nil); the UI mounts endpoint names the mount or fails.
	sec, err := api.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+k.mount)
	if err != nil {
		return fmt.Errorf("transit: mount %s: %w", k.mount, err)
	}
	if sec == nil || sec.Data["type"] != "transit" {
		return fmt.Errorf("transit: mount %s: %w", k.mount, errNoMount)
	}
	return nil
}

// CreateKey implements ca.KeyManager: a new ecdsa-p256 key, exportable
// false, named label.
func (k *KeyManager) CreateKey(ctx context.Context, label string) (string, crypto.Signer, error) {
	api, err := k.client.API(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("transit: %w", err)
	}
	ref := k.mount + "/keys/" + label
	if sec, err := api.Logical().ReadWithContext(ctx, ref); err != nil {
		return "", nil, fmt.Errorf("transit: read %s: %w", ref, err)
	} else if sec != nil {
		return "", nil, fmt.Errorf("transit: key %s already exists", ref)
	}
	if _, err := api.Logical().WriteWithContext(ctx, ref, map[string]any{"type": "ecdsa-p256", "exportable": false, "allow_plaintext_backup": false}); err != nil {
		return "", nil, fmt.Errorf("transit: create %s: %w", ref, err)
	}
	s, err := k.Signer(ctx, ref)
	if err != nil {
		return "", nil, err
	}
	return ref, s, nil
}

// Signer implements ca.KeyManager. ref is mount/keys/name.
func (k *KeyManager) Signer(ctx context.Context, ref string) (crypto.Signer, error) {
	mount, name, ok := strings.Cut(ref, "/keys/")
	if !ok || mount == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("transit: key reference %q is not mount/keys/name", ref)
	}
	api, err := k.client.API(ctx)
	if err != nil {
		return nil, fmt.Errorf("transit: %w", err)
	}
	sec, err := api.Logical().ReadWithContext(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("transit: read %s: %w", ref, err)
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("%w: transit key %s", ca.ErrKeyNotFound, ref)
	}
	if exp, _ := sec.Data["exportable"].(bool); exp {
		return nil, fmt.Errorf("transit: key %s is exportable: a CA key must not be (create it with exportable=false)", ref)
	}
	if t, _ := sec.Data["type"].(string); t != "ecdsa-p256" {
		return nil, fmt.Errorf("transit: key %s has type %q, want ecdsa-p256", ref, t)
	}
	version, pub, err := latestPublicKey(sec.Data)
	if err != nil {
		return nil, fmt.Errorf("transit: key %s: %w", ref, err)
	}
	return &signer{km: k, mount: mount, name: name, version: version, pub: pub}, nil
}

// latestPublicKey returns the newest version of a Transit key and its
// public key.
func latestPublicKey(data map[string]any) (int, *ecdsa.PublicKey, error) {
	latest, err := asInt(data["latest_version"])
	if err != nil {
		return 0, nil, fmt.Errorf("latest_version: %w", err)
	}
	keys, _ := data["keys"].(map[string]any)
	kv, _ := keys[strconv.Itoa(latest)].(map[string]any)
	pemText, _ := kv["public_key"].(string)
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return 0, nil, fmt.Errorf("version %d has no PEM public key", latest)
	}
	pk, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return 0, nil, err
	}
	ec, ok := pk.(*ecdsa.PublicKey)
	if !ok {
		return 0, nil, fmt.Errorf("version %d holds a %T key", latest, pk)
	}
	return latest, ec, nil
}

func asInt(v any) (int, error) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err
	case float64:
		return int(n), nil
	case int:
		return n, nil
	}
	return 0, fmt.Errorf("unexpected %T", v)
}

// DeleteKey implements ca.KeyDeleter: Transit deletes only keys whose
// deletion_allowed is set, so it sets it first.
func (k *KeyManager) DeleteKey(ctx context.Context, ref string) error {
	api, err := k.client.API(ctx)
	if err != nil {
		return fmt.Errorf("transit: %w", err)
	}
	if _, err := api.Logical().WriteWithContext(ctx, ref+"/config", map[string]any{"deletion_allowed": true}); err != nil {
		return fmt.Errorf("transit: allow deletion of %s: %w", ref, err)
	}
	if _, err := api.Logical().DeleteWithContext(ctx, ref); err != nil {
		return fmt.Errorf("transit: delete %s: %w", ref, err)
	}
	return nil
}

// signer signs digests with one version of a Transit key.
type signer struct {
	km      *KeyManager
	mount   string
	name    string
	version int
	pub     *ecdsa.PublicKey
}

func (s *signer) Public() crypto.PublicKey { return s.pub }

// signTimeout bounds one transit/sign call (crypto.Signer has no context).
const signTimeout = 30 * time.Second

// Sign implements crypto.Signer: digest is signed by Vault (prehashed),
// the signature is ASN.1 DER as crypto/ecdsa's.
func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var alg string
	switch opts.HashFunc() {
	case crypto.SHA256:
		alg = "sha2-256"
	case crypto.SHA384:
		alg = "sha2-384"
	case crypto.SHA512:
		alg = "sha2-512"
	default:
		return nil, fmt.Errorf("transit: unsupported hash %v", opts.HashFunc())
	}
	ctx, cancel := context.WithTimeout(context.Background(), signTimeout)
	defer cancel()
	api, err := s.km.client.API(ctx)
	if err != nil {
		return nil, fmt.Errorf("transit: %w", err)
	}
	path := s.mount + "/sign/" + s.name
	sec, err := api.Logical().WriteWithContext(ctx, path, map[string]any{
		"input":                base64.StdEncoding.EncodeToString(digest),
		"prehashed":            true,
		"hash_algorithm":       alg,
		"marshaling_algorithm": "asn1",
		"key_version":          s.version,
	})
	if err != nil {
		var re *vault.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("%w: transit key %s/keys/%s", ca.ErrKeyNotFound, s.mount, s.name)
		}
		return nil, fmt.Errorf("transit: sign with %s: %w", path, err)
	}
	sig, _ := sec.Data["signature"].(string)
	prefix := "vault:v" + strconv.Itoa(s.version) + ":"
	if !strings.HasPrefix(sig, prefix) {
		return nil, fmt.Errorf("transit: sign with %s: unexpected signature %q", path, sig)
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sig, prefix))
	if err != nil {
		return nil, fmt.Errorf("transit: sign with %s: %w", path, err)
	}
	return der, nil
}
