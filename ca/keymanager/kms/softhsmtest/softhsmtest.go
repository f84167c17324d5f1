// Package softhsmtest gives tests a real SoftHSM2 token (the Debian
// softhsm2 package, installed by scripts/install-debs.sh) in a temporary
// directory, and reads key attributes back over PKCS#11. A missing
// SoftHSM2 fails the test when CI=true and skips it otherwise.
package softhsmtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/miekg/pkcs11"
)

// Module paths of SoftHSM2's PKCS#11 library on Debian and others.
var modules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// Token is an initialised SoftHSM2 token.
type Token struct {
	Module  string
	Label   string
	PIN     string
	PINFile string // mode 0600, holds PIN
	Dir     string // the token directory
}

// Module returns SoftHSM2's module path, or fails/skips the test.
func Module(t testing.TB) string {
	t.Helper()
	for _, m := range modules {
		if _, err := os.Stat(m); err == nil {
			if _, err := exec.LookPath("softhsm2-util"); err == nil {
				return m
			}
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("SoftHSM2 is not installed: run scripts/install-debs.sh")
	}
	t.Skip("SoftHSM2 is not installed: run scripts/install-debs.sh")
	return ""
}

// New initialises a token labelled label in a temporary directory and
// points SOFTHSM2_CONF at it for the rest of the test (so the test cannot
// be parallel).
func New(t testing.TB, label string) *Token {
	t.Helper()
	mod := Module(t)
	base := t.TempDir()
	dir := filepath.Join(base, "tokens")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(base, "softhsm2.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", dir), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	tk := &Token{Module: mod, Label: label, PIN: "71-user-pin", Dir: dir, PINFile: filepath.Join(base, "pin")}
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", tk.PIN, "--so-pin", "so-"+tk.PIN).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	if err := os.WriteFile(tk.PINFile, []byte(tk.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return tk
}

// URI is the kms URI of the token, with the PIN in PINFile.
func (tk *Token) URI() string {
	return fmt.Sprintf("pkcs11:module-path=%s;token=%s?pin-source=%s", tk.Module, tk.Label, tk.PINFile)
}

// PrivateKey are the attributes of a private key object, as the token
// reports them.
type PrivateKey struct {
	Label       string
	Extractable bool
	Sensitive   bool
}

// PrivateKeys lists the token's private key objects.
func (tk *Token) PrivateKeys(t testing.TB) []PrivateKey {
	t.Helper()
	p := pkcs11.New(tk.Module)
	if p == nil {
		t.Fatalf("cannot load %s", tk.Module)
	}
	switch err := p.Initialize(); {
	case err == nil:
		// Nobody else had the module open: close it again, so that
		// the code under test initialises it afresh.
		defer func() { _ = p.Finalize() }()
	case !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)):
		t.Fatal(err)
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	var slot uint
	found := false
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err == nil && ti.Label == tk.Label {
			slot, found = s, true
		}
	}
	if !found {
		t.Fatalf("no token %q", tk.Label)
	}
	sess, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.CloseSession(sess) }()
	if err := p.Login(sess, pkcs11.CKU_USER, tk.PIN); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		t.Fatal(err)
	}
	if err := p.FindObjectsInit(sess, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)}); err != nil {
		t.Fatal(err)
	}
	objs, _, err := p.FindObjects(sess, 100)
	_ = p.FindObjectsFinal(sess)
	if err != nil {
		t.Fatal(err)
	}
	var out []PrivateKey
	for _, o := range objs {
		attrs, err := p.GetAttributeValue(sess, o, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, PrivateKey{Label: string(attrs[0].Value), Extractable: isTrue(attrs[1].Value), Sensitive: isTrue(attrs[2].Value)})
	}
	return out
}

func isTrue(v []byte) bool { return len(v) == 1 && v[0] != 0 }
