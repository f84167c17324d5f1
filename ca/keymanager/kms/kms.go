// Package kms is a ca.KeyManager over go.step.sm/crypto/kms: PKCS#11
// tokens (HSMs, SoftHSM2) always, and AWS KMS, Google Cloud KMS and Azure
// Key Vault in binaries built with -tags signet_cloudkms. Keys are created
// in the key manager, non-exportable, and only their URIs leave it.
package kms

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/signet-id/signet/ca"
	"go.step.sm/crypto/kms/apiv1"
)

// Config configures a KeyManager.
type Config struct {
	// URI opens the key manager, e.g.
	// pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=signet?pin-source=/etc/signet/hsm.pin
	// The PIN is never written in the URI: pin-source names a file (mode
	// 0600 or stricter) or env:NAME an environment variable.
	URI string
	// KeyRing is the Cloud KMS key ring new keys go in
	// (projects/P/locations/L/keyRings/R); cloudkms only.
	KeyRing string
}

// KeyManager creates and opens keys in a go.step.sm/crypto/kms key
// manager.
type KeyManager struct {
	typ     apiv1.Type
	km      apiv1.KeyManager
	keyRing string
	// base is the opening URI without its PIN source: a pkcs11 key URI is
	// base's module and token with the key's id and object.
	base string
}

var (
	_ ca.KeyManager = (*KeyManager)(nil)
	_ ca.KeyDeleter = (*KeyManager)(nil)
)

// ErrPINInURI is returned when the configuration writes the PIN itself.
var ErrPINInURI = errors.New("kms: the URI must not hold the PIN (pin-value): put the PIN in a file (pin-source=/path/to/pin, mode 0600) or an environment variable (pin-source=env:NAME)")

// Open opens the key manager cfg.URI names. It fails when the key manager
// is unreachable or refuses the credentials, naming which.
func Open(ctx context.Context, cfg Config) (*KeyManager, error) {
	typ, err := kindOf(cfg.URI)
	if err != nil {
		return nil, err
	}
	uri, pin, err := splitPIN(cfg.URI)
	if err != nil {
		return nil, err
	}
	if typ == apiv1.CloudKMS && cfg.KeyRing == "" {
		return nil, errors.New("kms: cloudkms needs key_ring (projects/P/locations/L/keyRings/R) for the keys it creates")
	}
	fn, ok := apiv1.LoadKeyManagerNewFunc(typ)
	if !ok {
		return nil, fmt.Errorf("kms: key manager %s is not built into this binary: rebuild with -tags signet_cloudkms (see docs/key-custody.md)", typ)
	}
	km, err := fn(ctx, apiv1.Options{Type: typ, URI: uri, Pin: pin})
	if err != nil {
		return nil, fmt.Errorf("kms: open %s: %w", uri, explain(err))
	}
	return &KeyManager{typ: typ, km: km, keyRing: cfg.KeyRing, base: uri}, nil
}

// supported are the key managers this package opens. softkms is not one:
// its keys live in memory or in files the server would write itself.
var supported = []apiv1.Type{apiv1.PKCS11, apiv1.AmazonKMS, apiv1.CloudKMS, apiv1.AzureKMS}

func kindOf(raw string) (apiv1.Type, error) {
	scheme, _, ok := strings.Cut(raw, ":")
	if raw == "" || !ok {
		return "", fmt.Errorf("kms: uri %q names no key manager: want a pkcs11, awskms, cloudkms or azurekms URI", raw)
	}
	typ := apiv1.Type(strings.ToLower(scheme))
	for _, t := range supported {
		if t == typ {
			return typ, nil
		}
	}
	if typ == apiv1.SoftKMS {
		return "", errors.New("kms: softkms keeps keys in memory or in files: without a KeyManager block Signet keeps the CA keys in its state (0600 file, or sealed in etcd) already")
	}
	return "", fmt.Errorf("kms: unsupported key manager %q: want pkcs11, awskms, cloudkms or azurekms (Vault Transit is KeyManager \"hashicorp_vault\")", scheme)
}

// splitPIN removes pin-source from raw and reads the PIN it names; it
// refuses pin-value.
func splitPIN(raw string) (uri, pin string, err error) {
	head, query, _ := strings.Cut(raw, "?")
	var opaque []string
	var source string
	for _, part := range strings.Split(head, ";") {
		k, v, _ := strings.Cut(part, "=")
		switch strings.TrimPrefix(k, "pkcs11:") {
		case "pin-value":
			return "", "", ErrPINInURI
		case "pin-source":
			source = v
			continue
		}
		opaque = append(opaque, part)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", "", fmt.Errorf("kms: uri query: %w", err)
	}
	if q.Has("pin-value") {
		return "", "", ErrPINInURI
	}
	if v := q.Get("pin-source"); v != "" {
		source = v
	}
	q.Del("pin-source")
	uri = strings.Join(opaque, ";")
	if enc := q.Encode(); enc != "" {
		uri += "?" + enc
	}
	if source == "" {
		return uri, "", nil
	}
	pin, err = readPIN(source)
	return uri, pin, err
}

// readPIN reads a PIN from env:NAME or a file that only its owner can
// read.
func readPIN(source string) (string, error) {
	if name, ok := strings.CutPrefix(source, "env:"); ok {
		v := os.Getenv(name)
		if v == "" {
			return "", fmt.Errorf("kms: pin-source env:%s: the environment variable is empty or unset", name)
		}
		return v, nil
	}
	path := strings.TrimPrefix(source, "file:")
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("kms: pin-source: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("kms: pin-source %s is readable by group or others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("kms: pin-source: %w", err)
	}
	pin := strings.TrimRight(string(data), "\r\n\t ")
	if pin == "" {
		return "", fmt.Errorf("kms: pin-source %s is empty", path)
	}
	return pin, nil
}

// explain turns PKCS#11 return codes into what the operator should check.
func explain(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "CKR_PIN_INCORRECT"):
		return fmt.Errorf("the token refused the PIN from pin-source (CKR_PIN_INCORRECT): %w", err)
	case strings.Contains(msg, "CKR_PIN_LOCKED"):
		return fmt.Errorf("the token's user PIN is locked (CKR_PIN_LOCKED): %w", err)
	case strings.Contains(msg, "could not find PKCS#11 token"), strings.Contains(msg, "no slot"):
		return fmt.Errorf("no such token in the module (check token=, serial= or slot-id=): %w", err)
	case strings.Contains(msg, "failed to open module"), strings.Contains(msg, "cannot open shared object"):
		return fmt.Errorf("the PKCS#11 module cannot be loaded (check module-path=): %w", err)
	}
	return err
}

// Kind implements ca.KeyManager.
func (k *KeyManager) Kind() string { return string(k.typ) }

// URI is the opening URI without its PIN source.
func (k *KeyManager) URI() string { return k.base }

// keyName is the name a new key labelled label is created under.
func (k *KeyManager) keyName(label string) (string, error) {
	switch k.typ {
	case apiv1.PKCS11:
		var id [8]byte
		if _, err := rand.Read(id[:]); err != nil {
			return "", fmt.Errorf("kms: key id: %w", err)
		}
		return "pkcs11:id=" + hex.EncodeToString(id[:]) + ";object=" + label, nil
	case apiv1.CloudKMS:
		return strings.TrimSuffix(k.keyRing, "/") + "/cryptoKeys/" + label, nil
	case apiv1.AzureKMS:
		return "azurekms:name=" + label, nil
	}
	return label, nil // awskms: the alias
}

// CreateKey implements ca.KeyManager: an ECDSA P-256 key, not extractable.
func (k *KeyManager) CreateKey(_ context.Context, label string) (string, crypto.Signer, error) {
	name, err := k.keyName(label)
	if err != nil {
		return "", nil, err
	}
	resp, err := k.km.CreateKey(&apiv1.CreateKeyRequest{Name: name, SignatureAlgorithm: apiv1.ECDSAWithSHA256, Extractable: false})
	if err != nil {
		return "", nil, fmt.Errorf("kms: create key %s: %w", name, explain(err))
	}
	signer, err := k.km.CreateSigner(&resp.CreateSignerRequest)
	if err != nil {
		return "", nil, fmt.Errorf("kms: open key %s: %w", resp.Name, explain(err))
	}
	return resp.Name, &reopening{km: k, ref: resp.Name, inner: signer}, nil
}

// Signer implements ca.KeyManager.
func (k *KeyManager) Signer(_ context.Context, ref string) (crypto.Signer, error) {
	s, err := k.km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: ref})
	if err != nil {
		var nf apiv1.NotFoundError
		if errors.As(err, &nf) || strings.Contains(err.Error(), "not found") {
			return nil, fmt.Errorf("%w (%s): %w", ca.ErrKeyNotFound, k.typ, err)
		}
		return nil, fmt.Errorf("kms: open key %s: %w", ref, explain(err))
	}
	return &reopening{km: k, ref: ref, inner: s}, nil
}

// open finds the key ref again (a new object handle).
func (k *KeyManager) open(ref string) (crypto.Signer, error) {
	return k.km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: ref})
}

// reopening is a signer that finds its key again when a signature fails:
// an HSM that restarted, or a token that was re-inserted, invalidates the
// object handles the key manager held, though the key is still there.
type reopening struct {
	km  *KeyManager
	ref string

	mu    sync.Mutex
	inner crypto.Signer
}

func (r *reopening) Public() crypto.PublicKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inner.Public()
}

// Sign implements crypto.Signer, retrying once with the key found again.
func (r *reopening) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	r.mu.Lock()
	inner := r.inner
	r.mu.Unlock()
	sig, err := inner.Sign(rand, digest, opts)
	if err == nil {
		return sig, nil
	}
	again, oerr := r.km.open(r.ref)
	if oerr != nil {
		return nil, fmt.Errorf("kms: sign with %s: %w (and the key could not be opened again: %w)", r.ref, explain(err), oerr)
	}
	if pe, ok := again.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pe.Equal(inner.Public()) {
		return nil, fmt.Errorf("kms: sign with %s: %w (the key found again is another key)", r.ref, explain(err))
	}
	r.mu.Lock()
	r.inner = again
	r.mu.Unlock()
	return again.Sign(rand, digest, opts)
}

// DeleteKey implements ca.KeyDeleter where the key manager can delete.
func (k *KeyManager) DeleteKey(_ context.Context, ref string) error {
	d, ok := k.km.(apiv1.KeyDeleter)
	if !ok {
		if p, ok := k.km.(interface{ DeleteKey(string) error }); ok {
			return p.DeleteKey(ref)
		}
		return fmt.Errorf("kms: %s cannot delete keys", k.typ)
	}
	return d.DeleteKey(&apiv1.DeleteKeyRequest{Name: ref})
}

// Close releases the key manager (PKCS#11 sessions).
func (k *KeyManager) Close() error { return k.km.Close() }
