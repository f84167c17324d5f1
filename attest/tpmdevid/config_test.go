package tpmdevid_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/tpmdevid"
	"github.com/signet-id/signet/attest/x509pop/x509poptest"
)

// TestConfig: SPIRE's required plugin_data on both halves, and the files
// they name.
func TestConfig(t *testing.T) {
	dir := t.TempDir()
	ca := x509poptest.NewCA(t, "root", nil, time.Now().Add(-time.Hour))
	caPath := filepath.Join(dir, "ca.pem")
	blob := filepath.Join(dir, "blob")
	for p, b := range map[string][]byte{caPath: x509poptest.PEM(ca.Cert), blob: {1}} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "absent")
	servers := []struct {
		name string
		d    tpmdevid.ServerPluginData
		err  string
	}{
		{"ok", tpmdevid.ServerPluginData{DevIDCAPath: caPath, EndorsementCAPath: caPath}, ""},
		{"no DevID CA", tpmdevid.ServerPluginData{EndorsementCAPath: caPath}, "devid_ca_path is required"},
		{"no endorsement CA", tpmdevid.ServerPluginData{DevIDCAPath: caPath}, "endorsement_ca_path is required"},
		{"unreadable DevID CA", tpmdevid.ServerPluginData{DevIDCAPath: missing, EndorsementCAPath: caPath}, "unable to load DevID trust bundle"},
		{"endorsement CA without certificates", tpmdevid.ServerPluginData{DevIDCAPath: caPath, EndorsementCAPath: blob}, "unable to load endorsement trust bundle"},
	}
	for _, c := range servers {
		t.Run("server "+c.name, func(t *testing.T) {
			_, err := tpmdevid.ConfigFromPluginData(td, c.d)
			if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("error %v, want %q", err, c.err)
			}
		})
	}
	agents := []struct {
		name string
		d    tpmdevid.AgentPluginData
		err  string
	}{
		{"ok", tpmdevid.AgentPluginData{DevIDCertPath: caPath, DevIDPrivPath: blob, DevIDPubPath: blob}, ""},
		{"no certificate", tpmdevid.AgentPluginData{DevIDPrivPath: blob, DevIDPubPath: blob}, "devid_cert_path is required"},
		{"no private blob", tpmdevid.AgentPluginData{DevIDCertPath: caPath, DevIDPubPath: blob}, "devid_priv_path is required"},
		{"no public blob", tpmdevid.AgentPluginData{DevIDCertPath: caPath, DevIDPrivPath: blob}, "devid_pub_path is required"},
		{"device and TCP address", tpmdevid.AgentPluginData{DevIDCertPath: caPath, DevIDPrivPath: blob, DevIDPubPath: blob, TPMDevicePath: "/dev/tpmrm0", TPMTCPAddress: "127.0.0.1:1"}, "only one of tpm_device_path and tpm_tcp_address"},
		{"unreadable certificate", tpmdevid.AgentPluginData{DevIDCertPath: missing, DevIDPrivPath: blob, DevIDPubPath: blob}, "cannot load certificate(s)"},
		{"unreadable private blob", tpmdevid.AgentPluginData{DevIDCertPath: caPath, DevIDPrivPath: missing, DevIDPubPath: blob}, "cannot load private key"},
		{"unreadable public blob", tpmdevid.AgentPluginData{DevIDCertPath: caPath, DevIDPrivPath: blob, DevIDPubPath: missing}, "cannot load public key"},
	}
	for _, c := range agents {
		t.Run("agent "+c.name, func(t *testing.T) {
			_, err := tpmdevid.NewEvidence(c.d)
			if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("error %v, want %q", err, c.err)
			}
		})
	}
	t.Run("agent challenge before payload", func(t *testing.T) {
		ev, err := tpmdevid.NewEvidence(agents[0].d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ev.Respond(context.Background(), []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "challenge before payload") {
			t.Fatalf("Respond: %v", err)
		}
	})
}
