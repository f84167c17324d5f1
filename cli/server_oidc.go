package cli

import (
	"github.com/signet-id/signet/config"
	"github.com/signet-id/signet/server"
)

// oidcFromFile maps the oidc_discovery_provider block (validated by
// config.LoadServer) and the --oidc-address flag, which overrides its
// listen_address or, alone, serves the provider with the defaults (the
// server SVID, issuer https://localhost:<port>).
func oidcFromFile(p *config.OIDCDiscoveryProvider, addressFlag string) *server.OIDCConfig {
	if p == nil {
		if addressFlag == "" {
			return nil
		}
		return &server.OIDCConfig{Address: addressFlag}
	}
	o := &server.OIDCConfig{
		Address: pick(addressFlag, p.ListenAddress), Issuer: p.Issuer, JWKSURI: p.JWKSURI, Domains: p.Domains,
		SetKeyUse: p.SetKeyUse, InsecureHTTP: p.AllowInsecureHTTP, RequirePQ: p.RequirePQKeyExchange,
	}
	if f := p.ServingCertFile; f != nil {
		o.CertFile, o.KeyFile = f.CertFilePath, f.KeyFilePath
		o.FileSyncInterval, _ = config.Duration(f.FileSyncInterval)
		if o.FileSyncInterval == 0 {
			o.FileSyncInterval = defaultFileSyncInterval
		}
	}
	if h := p.HealthChecks; h != nil {
		o.LivePath, o.ReadyPath = h.Paths()
	}
	return o
}
