package kms_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/keymanager/kms"
	"github.com/signet-id/signet/ca/keymanager/kms/softhsmtest"
)

func open(t *testing.T, uri string) *kms.KeyManager {
	t.Helper()
	km, err := kms.Open(context.Background(), kms.Config{URI: uri})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { km.Close() })
	return km
}

func verifies(t *testing.T, s crypto.Signer) {
	t.Helper()
	d := sha256.Sum256([]byte("signet"))
	sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("signature does not verify")
	}
}

// TestPKCS11CreateSignReopen: a key created in a real SoftHSM2 token is not
// extractable, signs, and is found again by its URI from a new session.
func TestPKCS11CreateSignReopen(t *testing.T) {
	tk := softhsmtest.New(t, "signet-kms")
	km := open(t, tk.URI())
	if km.Kind() != "pkcs11" {
		t.Fatalf("kind %q", km.Kind())
	}
	if strings.Contains(km.URI(), "pin") {
		t.Fatalf("URI %q names the PIN source", km.URI())
	}
	ref, s, err := km.CreateKey(context.Background(), "signet-x509-test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ref, "pkcs11:id=") || !strings.Contains(ref, "object=signet-x509-test") || strings.Contains(ref, tk.PIN) {
		t.Fatalf("ref %q", ref)
	}
	verifies(t, s)
	keys := tk.PrivateKeys(t)
	if len(keys) != 1 || keys[0].Label != "signet-x509-test" || keys[0].Extractable || !keys[0].Sensitive {
		t.Fatalf("token holds %+v, want one sensitive, non-extractable key", keys)
	}
	km.Close()

	km2 := open(t, tk.URI())
	s2, err := km2.Signer(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if !s2.Public().(*ecdsa.PublicKey).Equal(s.Public()) {
		t.Fatal("reopened key differs")
	}
	verifies(t, s2)
	if err := km2.DeleteKey(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	if _, err := km2.Signer(context.Background(), ref); !errors.Is(err, ca.ErrKeyNotFound) {
		t.Fatalf("deleted key: %v, want ErrKeyNotFound", err)
	}
}

// TestPKCS11Refusals: a wrong PIN, a PIN in the URI, a loose PIN file, a
// wrong module, an unknown token and a missing key are each refused with
// what to fix, and no message carries the PIN.
func TestPKCS11Refusals(t *testing.T) {
	tk := softhsmtest.New(t, "signet-refuse")
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not-the-pin"), 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(t.TempDir(), "loose")
	if err := os.WriteFile(loose, []byte(tk.PIN), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SIGNET_TEST_PIN", tk.PIN)
	base := "pkcs11:module-path=" + tk.Module + ";token=" + tk.Label
	for _, c := range []struct {
		name, uri, want string
	}{
		{"wrong PIN", base + "?pin-source=" + wrong, "refused the PIN from pin-source (CKR_PIN_INCORRECT)"},
		{"pin-value", base + "?pin-value=" + tk.PIN, "must not hold the PIN"},
		{"pin-value in path", base + ";pin-value=" + tk.PIN, "must not hold the PIN"},
		{"loose PIN file", base + "?pin-source=" + loose, "readable by group or others"},
		{"missing PIN file", base + "?pin-source=/nonexistent/pin", "no such file"},
		{"empty PIN env", base + "?pin-source=env:SIGNET_TEST_UNSET", "env:SIGNET_TEST_UNSET: the environment variable is empty"},
		{"wrong module", "pkcs11:module-path=/nonexistent/libnone.so;token=" + tk.Label + "?pin-source=" + tk.PINFile, "cannot be loaded (check module-path=)"},
		{"unknown token", "pkcs11:module-path=" + tk.Module + ";token=nosuch?pin-source=" + tk.PINFile, "no such token"},
		{"softkms", "softkms:", "keeps keys in memory"},
		{"unknown scheme", "yubikey:serial=1", "unsupported key manager"},
		{"no scheme", "", "names no key manager"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := kms.Open(context.Background(), kms.Config{URI: c.uri})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: %v, want %q", err, c.want)
			}
			if strings.Contains(err.Error(), tk.PIN) {
				t.Fatalf("error carries the PIN: %v", err)
			}
		})
	}
	// The PIN from an environment variable opens the token.
	km := open(t, base+"?pin-source=env:SIGNET_TEST_PIN")
	if _, err := km.Signer(context.Background(), "pkcs11:id=0102;object=nosuch"); !errors.Is(err, ca.ErrKeyNotFound) {
		t.Fatalf("missing key: %v, want ErrKeyNotFound", err)
	}
}

func newCSR(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k, nil
}
