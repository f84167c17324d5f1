package tlspolicy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/signet-id/signet/tlspolicy"
	"github.com/signet-id/signet/tlspolicy/tlspolicytest"
)

// TestCertFileReload: the pair is re-read once the sync interval elapsed
// (a rotated certificate is served without a restart); a broken re-read
// keeps the previous pair; missing files fail Load with both paths.
func TestCertFileReload(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, _ := tlspolicytest.WriteSelfSigned(t, dir)
	clk := fakeclock.New(time.Now())
	cf := &tlspolicy.CertFile{CertPath: certPath, KeyPath: keyPath, SyncInterval: time.Minute, Clock: clk}
	if err := cf.Load(); err != nil {
		t.Fatal(err)
	}
	first, err := cf.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Rotate the files: not seen before the interval, seen after.
	tlspolicytest.WriteSelfSigned(t, dir)
	if c, _ := cf.GetCertificate(nil); !bytes.Equal(c.Certificate[0], first.Certificate[0]) {
		t.Fatal("re-read before the sync interval")
	}
	clk.Advance(time.Minute)
	second, err := cf.GetCertificate(nil)
	if err != nil || bytes.Equal(second.Certificate[0], first.Certificate[0]) {
		t.Fatalf("rotated certificate not served after the interval: %v", err)
	}
	// A broken file keeps the previous pair.
	if err := os.WriteFile(keyPath, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if c, err := cf.GetCertificate(nil); err != nil || !bytes.Equal(c.Certificate[0], second.Certificate[0]) {
		t.Fatalf("broken re-read: %v", err)
	}
	missing := &tlspolicy.CertFile{CertPath: filepath.Join(dir, "none.crt"), KeyPath: keyPath}
	if err := missing.Load(); err == nil || !strings.Contains(err.Error(), "none.crt") || !strings.Contains(err.Error(), keyPath) {
		t.Fatalf("missing files: %v", err)
	}
}
