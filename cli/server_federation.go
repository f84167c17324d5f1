package cli

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/signet-id/signet/config"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// federationFromFile maps the server block's federation block (validated
// by config.LoadServer) to the server's federation settings.
func federationFromFile(f *config.Federation) server.FederationConfig {
	var out server.FederationConfig
	if f == nil {
		return out
	}
	if be := f.BundleEndpoint; be != nil {
		host := strings.Trim(be.Address, "[]")
		if host == "" {
			host = "0.0.0.0"
		}
		port := be.Port
		if port == 0 {
			port = 8443
		}
		sc := &server.BundleEndpointConfig{Address: net.JoinHostPort(host, strconv.Itoa(port)), Profile: federation.ProfileSPIFFE}
		sc.RefreshHint, _ = config.Duration(be.RefreshHint)
		if p := be.Profile; p != nil && p.Name == string(federation.ProfileWeb) {
			sc.Profile = federation.ProfileWeb
			sc.CertFile, sc.KeyFile = p.ServingCertFile.CertFilePath, p.ServingCertFile.KeyFilePath
			sc.FileSyncInterval, _ = config.Duration(p.ServingCertFile.FileSyncInterval)
			if sc.FileSyncInterval == 0 {
				sc.FileSyncInterval = defaultFileSyncInterval
			}
		}
		out.BundleEndpoint = sc
	}
	for _, fw := range f.FederatesWith {
		rel := federation.Relationship{
			TrustDomain: spiffeid.RequireTrustDomainFromString(fw.TrustDomain),
			URL:         fw.BundleEndpointURL,
			Profile:     federation.Profile(fw.BundleEndpointProfile.Name),
			Static:      true,
		}
		if rel.Profile == federation.ProfileSPIFFE {
			rel.EndpointID = spiffeid.RequireFromString(fw.BundleEndpointProfile.EndpointSPIFFEID)
		}
		out.FederatesWith = append(out.FederatesWith, rel)
	}
	return out
}

// defaultFileSyncInterval is SPIRE's file_sync_interval default.
const defaultFileSyncInterval = time.Hour
