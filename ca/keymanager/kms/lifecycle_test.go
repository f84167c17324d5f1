package kms_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/keymanager/kms"
	"github.com/signet-id/signet/ca/keymanager/kms/softhsmtest"
	"github.com/signet-id/signet/issuer"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// clock is a settable time for the CA lifecycle.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func newCA(t *testing.T, km ca.KeyManager, path string, c *clock, profile ca.Profile) (*ca.Manager, error) {
	t.Helper()
	return ca.New(ca.Config{TrustDomain: td, Path: path, KeyManager: km, Now: c.Now, CATTL: time.Hour, Profile: profile})
}

// verifySVIDs issues an X.509-SVID and a JWT-SVID with m's active keys and
// verifies them with go-spiffe against m's bundle.
func verifySVIDs(t *testing.T, m *ca.Manager, c *clock) {
	t.Helper()
	iss, err := issuer.New(issuer.Config{TrustDomain: td, Authority: m, Now: c.Now, JWTTTL: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromPath(td, "/workload")
	leafKey, csr := newCSR(t)
	chain, err := iss.X509SVID(issuer.X509Params{ID: id, PublicKey: leafKey.Public()})
	if err != nil {
		_ = csr
		t.Fatal(err)
	}
	b := m.Bundle()
	if _, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, b.X509Authorities()), x509svid.WithTime(c.now)); err != nil {
		t.Fatalf("go-spiffe refuses the X.509-SVID: %v", err)
	}
	tok, _, err := iss.JWTSVID(issuer.JWTParams{ID: id, Audience: []string{"test"}})
	if err != nil {
		t.Fatal(err)
	}
	jb := jwtbundle.FromJWTAuthorities(td, b.JWTAuthorities())
	if _, err := jwtsvid.ParseAndValidate(tok, jb, []string{"test"}); err != nil {
		t.Fatalf("go-spiffe refuses the JWT-SVID: %v", err)
	}
}

// TestPKCS11CALifecycle runs the CA lifecycle with every key in a real
// SoftHSM2 token: keys are created there (not extractable) and the state
// holds only their URIs; SVIDs verify with go-spiffe; a restart reopens the
// keys; rotation (prepare, activate) creates the next key in the token;
// taint works as without a key manager; revoke deletes the key.
func TestPKCS11CALifecycle(t *testing.T) {
	tk := softhsmtest.New(t, "signet-life")
	km := open(t, tk.URI())
	path := filepath.Join(t.TempDir(), "ca", "ca.json")
	// Start in the past so that the JWT-SVIDs minted after the clock moves
	// forward are not issued in the future for go-spiffe (it validates
	// against the wall clock).
	c := &clock{now: time.Now().Add(-55 * time.Minute)}
	m, err := newCA(t, km, path, c, ca.ProfileClassic)
	if err != nil {
		t.Fatal(err)
	}
	keys := tk.PrivateKeys(t)
	if len(keys) != 2 {
		t.Fatalf("token holds %d keys, want the X.509 CA's and the JWT key", len(keys))
	}
	for _, k := range keys {
		if k.Extractable || !k.Sensitive {
			t.Fatalf("key %+v is extractable or not sensitive", k)
		}
	}
	state, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(state, []byte(`"key":`)) || !bytes.Contains(state, []byte(`"key_ref": "pkcs11:id=`)) || bytes.Contains(state, []byte(tk.PIN)) {
		t.Fatalf("the CA state holds key material or no key references:\n%s", state)
	}
	x := m.X509Authorities()[0]
	if x.KeyManager != "pkcs11" || !strings.HasPrefix(x.KeyURI, "pkcs11:id=") || !strings.Contains(x.KeyURI, "object=signet-x509-") {
		t.Fatalf("X.509 key location %q %q", x.KeyManager, x.KeyURI)
	}
	verifySVIDs(t, m, c)

	// Restart: the same keys, reopened from the token by URI.
	before := m.X509Authorities()[0].KeyURI
	km.Close()
	km = open(t, tk.URI())
	m, err = newCA(t, km, path, c, ca.ProfileClassic)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.X509Authorities()[0].KeyURI; got != before || len(tk.PrivateKeys(t)) != 2 {
		t.Fatalf("restart: key %s, want %s reused", got, before)
	}
	verifySVIDs(t, m, c)

	// Rotation on schedule: prepare at half-life, activate at 5/6.
	c.now = c.now.Add(31 * time.Minute)
	if _, err := m.Rotate(); err != nil {
		t.Fatal(err)
	}
	if n := len(tk.PrivateKeys(t)); n != 4 {
		t.Fatalf("after prepare the token holds %d keys, want 4", n)
	}
	c.now = c.now.Add(20 * time.Minute)
	if _, err := m.Rotate(); err != nil {
		t.Fatal(err)
	}
	if got := m.X509Authorities()[0]; got.Status != ca.StatusActive || got.KeyURI == before {
		t.Fatalf("after activation: %+v", got)
	}
	verifySVIDs(t, m, c)

	// Taint and revoke the old one: revoke deletes its key.
	old := m.X509Authorities()[1]
	if _, err := m.TaintX509(old.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.RevokeX509(old.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := km.Signer(context.Background(), old.KeyURI); !errors.Is(err, ca.ErrKeyNotFound) {
		t.Fatalf("revoked authority's key: %v, want deleted", err)
	}
	verifySVIDs(t, m, c)
}

// TestPKCS11Refusals at the CA: a state naming a key the token does not
// have, a state naming a key manager that is not configured, and the pq
// profile are refused at start with what is wrong.
func TestPKCS11StartRefusals(t *testing.T) {
	tk := softhsmtest.New(t, "signet-start")
	km := open(t, tk.URI())
	path := filepath.Join(t.TempDir(), "ca", "ca.json")
	c := &clock{now: time.Now()}
	m, err := newCA(t, km, path, c, ca.ProfileClassic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newCA(t, nil, path, c, ca.ProfileClassic); err == nil || !strings.Contains(err.Error(), "no key manager is configured") {
		t.Fatalf("state with pkcs11 keys, no key manager: %v", err)
	}
	if err := km.DeleteKey(context.Background(), m.JWTAuthorities()[0].KeyURI); err != nil {
		t.Fatal(err)
	}
	_, err = newCA(t, km, path, c, ca.ProfileClassic)
	var kme *ca.KeyManagerError
	if !errors.As(err, &kme) || !errors.Is(err, ca.ErrKeyNotFound) || !strings.Contains(err.Error(), "JWT key 0") || !strings.Contains(err.Error(), m.JWTAuthorities()[0].KeyURI) {
		t.Fatalf("missing key: %v, want a KeyManagerError naming the JWT key and its URI", err)
	}
	if _, err := newCA(t, km, filepath.Join(t.TempDir(), "pq.json"), c, ca.ProfilePQ); err == nil || !strings.Contains(err.Error(), "cannot hold ML-DSA keys") {
		t.Fatalf("pq profile with a key manager: %v", err)
	}
}

// TestPKCS11HybridMLDSAStaysInState: with the hybrid profile the ECDSA
// keys are in the token and the ML-DSA alternative keys stay in the CA
// state; ca show's data says so.
func TestPKCS11HybridMLDSAStaysInState(t *testing.T) {
	tk := softhsmtest.New(t, "signet-hybrid")
	km := open(t, tk.URI())
	path := filepath.Join(t.TempDir(), "ca", "ca.json")
	c := &clock{now: time.Now()}
	m, err := newCA(t, km, path, c, ca.ProfileHybrid)
	if err != nil {
		t.Fatal(err)
	}
	x := m.X509Authorities()[0]
	if x.KeyManager != "pkcs11" || x.AltKeyLocation != path {
		t.Fatalf("hybrid X.509 keys: %q %q alt %q", x.KeyManager, x.KeyURI, x.AltKeyLocation)
	}
	state, _ := os.ReadFile(path)
	if !bytes.Contains(state, []byte(`"alt_key":`)) {
		t.Fatal("the ML-DSA key is not in the CA state")
	}
	if n := len(tk.PrivateKeys(t)); n != 2 {
		t.Fatalf("token holds %d keys, want 2 ECDSA keys", n)
	}
}

// TestPKCS11DownNothingHalfRotated: when the token cannot create keys
// (its directory is gone), a scheduled rotation and an admin prepare are
// refused with the key manager's error, and nothing changes: the same
// slots, the same state file, and the active CA keeps signing.
func TestPKCS11DownNothingHalfRotated(t *testing.T) {
	tk := softhsmtest.New(t, "signet-down")
	km := open(t, tk.URI())
	path := filepath.Join(t.TempDir(), "ca", "ca.json")
	c := &clock{now: time.Now()}
	m, err := newCA(t, km, path, c, ca.ProfileClassic)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	slots := m.X509Authorities()
	jslots := m.JWTAuthorities()
	if err := os.Rename(tk.Dir, tk.Dir+".gone"); err != nil {
		t.Fatal(err)
	}
	c.now = c.now.Add(31 * time.Minute) // prepare is due for both kinds
	changed, err := m.Rotate()
	var kme *ca.KeyManagerError
	if err == nil || changed || !errors.As(err, &kme) || kme.Op != "create" || kme.Kind != "pkcs11" {
		t.Fatalf("Rotate with the token gone: changed=%v err=%v, want a pkcs11 create error", changed, err)
	}
	if _, err := m.PrepareJWT(); !errors.As(err, &kme) {
		t.Fatalf("PrepareJWT with the token gone: %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("the CA state changed after a refused rotation")
	}
	if got := m.X509Authorities(); len(got) != len(slots) || got[0].ID != slots[0].ID {
		t.Fatalf("X.509 slots changed: %+v", got)
	}
	if got := m.JWTAuthorities(); len(got) != len(jslots) || got[0].ID != jslots[0].ID {
		t.Fatalf("JWT slots changed: %+v", got)
	}
	// SoftHSM2 drops a token whose directory vanished: the token is back
	// for a process that opens the module again (a server restart). The
	// state it reads is the one from before the refused rotation.
	if err := os.Rename(tk.Dir+".gone", tk.Dir); err != nil {
		t.Fatal(err)
	}
	km.Close()
	km = open(t, tk.URI())
	m, err = newCA(t, km, path, c, ca.ProfileClassic)
	if err != nil {
		t.Fatal(err)
	}
	// The start-up rotation did the prepare that was refused; the active
	// authority is the one from before and signs.
	got := m.X509Authorities()
	if len(got) != 2 || got[0].Status != ca.StatusPrepared || got[1].ID != slots[0].ID || got[1].Status != ca.StatusActive {
		t.Fatalf("X.509 slots after restart: %+v", got)
	}
	cert, key := m.X509Authority()
	if _, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: cert.SerialNumber}, cert, key.Public(), key); err != nil {
		t.Fatalf("the active CA does not sign after the token is back: %v", err)
	}
}

// TestPKCS11WrongPINRefusedAtOpen is the start-up refusal of a wrong PIN
// (the server opens the key manager before the CA).
func TestPKCS11WrongPINRefusedAtOpen(t *testing.T) {
	tk := softhsmtest.New(t, "signet-pin")
	wrong := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(wrong, []byte("000000"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := kms.Open(context.Background(), kms.Config{URI: strings.Replace(tk.URI(), tk.PINFile, wrong, 1)})
	if err == nil || !strings.Contains(err.Error(), "CKR_PIN_INCORRECT") {
		t.Fatalf("wrong PIN: %v", err)
	}
}
