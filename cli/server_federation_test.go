package cli

import (
	"testing"
	"time"

	"github.com/signet-id/signet/config"
	"github.com/signet-id/signet/server/federation"
)

// TestFederationFromFile: the federation block maps to the server's
// settings with SPIRE's defaults (0.0.0.0:8443, https_spiffe, a 1h file
// sync interval).
func TestFederationFromFile(t *testing.T) {
	got := federationFromFile(&config.Federation{
		BundleEndpoint: &config.BundleEndpoint{RefreshHint: "90s"},
		FederatesWith: []config.FederatesWith{
			{TrustDomain: "a.test", BundleEndpointURL: "https://a.test", BundleEndpointProfile: &config.FederatesWithProfile{Name: "https_web"}},
			{TrustDomain: "b.test", BundleEndpointURL: "https://b.test", BundleEndpointProfile: &config.FederatesWithProfile{Name: "https_spiffe", EndpointSPIFFEID: "spiffe://b.test/be"}},
		},
	})
	be := got.BundleEndpoint
	if be.Address != "0.0.0.0:8443" || be.Profile != federation.ProfileSPIFFE || be.RefreshHint != 90*time.Second {
		t.Fatalf("bundle endpoint %+v", be)
	}
	if len(got.FederatesWith) != 2 || got.FederatesWith[0].Profile != federation.ProfileWeb || got.FederatesWith[1].EndpointID.String() != "spiffe://b.test/be" || !got.FederatesWith[1].Static {
		t.Fatalf("relationships %+v", got.FederatesWith)
	}
	web := federationFromFile(&config.Federation{BundleEndpoint: &config.BundleEndpoint{Address: "::1", Port: 9443, Profile: &config.EndpointProfile{
		Name: "https_web", ServingCertFile: &config.ServingCertFile{CertFilePath: "c", KeyFilePath: "k"}}}})
	if w := web.BundleEndpoint; w.Address != "[::1]:9443" || w.Profile != federation.ProfileWeb || w.CertFile != "c" || w.FileSyncInterval != time.Hour {
		t.Fatalf("https_web endpoint %+v", w)
	}
	if f := federationFromFile(nil); f.BundleEndpoint != nil || f.FederatesWith != nil {
		t.Fatalf("no block: %+v", f)
	}
}
