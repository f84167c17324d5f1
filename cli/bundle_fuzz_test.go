package cli

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/signet-id/signet/pq/pqtest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzBundleFromData fuzzes the bundle files the CLI reads: federated
// bundle data for `signet bundle set` (PEM or SPIFFE JSON) and the
// --bundle of `signet verify` (PEM or JSON, via loadBundle). What
// bundleFromData accepts must be a bundle the server's API accepts.
func FuzzBundleFromData(f *testing.F) {
	c, err := pqtest.Classic(time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Cert.Raw}), true)
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","use":"jwt-svid","kid":"k","x":"AAAA","y":"AAAA"}],"spiffe_refresh_hint":60}`), false)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"), true)
	f.Add([]byte(`{"signet_mldsa_keys":[]}`), false)
	td := spiffeid.RequireTrustDomainFromString("other.org")
	p := filepath.Join(f.TempDir(), "b") // one file for every input (calls run one at a time per worker)
	f.Fuzz(func(t *testing.T, data []byte, asPEM bool) {
		format := formatSPIFFE
		if asPEM {
			format = formatPEM
		}
		if b, err := bundleFromData(td, data, format); err == nil {
			if _, err := bundlecodec.FromProto(b); err != nil {
				t.Fatalf("CLI accepted a bundle the API refuses: %v", err)
			}
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _ = loadBundle(p, td)
	})
}
