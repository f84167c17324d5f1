package cli

import (
	"bytes"
	"strings"
	"testing"

	cav1 "github.com/signet-id/signet/proto/signet/ca/v1"
)

// TestCAShowKeyLocations: `signet ca show` says where each key lives (key
// manager and key URI, or the CA state) and where a hybrid ML-DSA key is
// kept, and prints no key material.
func TestCAShowKeyLocations(t *testing.T) {
	x509 := []*cav1.Authority{
		{AuthorityId: "b2c3", Status: cav1.Authority_STATUS_PREPARED, ExpiresAt: 1_800_100_000, KeyManager: "pkcs11", KeyUri: "pkcs11:id=0a1b2c3d4e5f6071;object=signet-x509-20261202t061200-a1b2c3d4e5f6",
			AltKeyLocation: "etcd:/signet/example.org/ca"},
		{AuthorityId: "a1b2", Status: cav1.Authority_STATUS_ACTIVE, ExpiresAt: 1_800_000_000, KeyManager: "pkcs11", KeyUri: "pkcs11:id=1122334455667788;object=signet-x509-20261201t061200-0f0e0d0c0b0a",
			AltKeyLocation: "etcd:/signet/example.org/ca"},
		{AuthorityId: "9f8e", Status: cav1.Authority_STATUS_OLD, Tainted: true, ExpiresAt: 1_799_900_000, KeyManager: "state", KeyUri: "/var/lib/signet/ca/ca.json"},
	}
	jwt := []*cav1.Authority{
		{AuthorityId: "kid-2", Status: cav1.Authority_STATUS_ACTIVE, ExpiresAt: 1_800_000_000, KeyManager: "hashicorp_vault", KeyUri: "transit/keys/signet-jwt-20261201t061200-0f0e0d0c0b0a"},
		{AuthorityId: "kid-1", Status: cav1.Authority_STATUS_OLD, ExpiresAt: 1_799_900_000},
	}
	var out bytes.Buffer
	printAuthorities(&out, "X.509 authorities", x509)
	out.WriteString("\n")
	printAuthorities(&out, "JWT authorities", jwt)
	golden(t, "ca_show_keys.txt", out.Bytes())
	for _, bad := range []string{"PRIVATE KEY", "pin"} {
		if strings.Contains(out.String(), bad) {
			t.Fatalf("ca show prints %q:\n%s", bad, out.String())
		}
	}
}
