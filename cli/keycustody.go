package cli

import (
	"fmt"
	"strconv"

	"github.com/signet-id/signet/config"
	"github.com/signet-id/signet/server"
)

// buildKeyCustody reads the server's KeyManager and UpstreamAuthority
// blocks: where the CA keys live and who signs the CA (docs/key-custody.md).
// Blocks the plugin table accepts or refuses were judged when the file
// was loaded.
func buildKeyCustody(ps *config.Plugins) (*server.KeyManagerConfig, *server.UpstreamDiskConfig, error) {
	if ps == nil {
		return nil, nil, nil
	}
	var km *server.KeyManagerConfig
	for _, p := range ps.KeyManagers {
		switch p.Type {
		case server.KeyManagerKMS:
			var d config.KMSKeyManagerData
			if p.Data == nil {
				return nil, nil, fmt.Errorf("KeyManager %q needs plugin_data { uri = \"pkcs11:...\" }", p.Type)
			}
			if err := config.DecodePluginData(p, &d); err != nil {
				return nil, nil, err
			}
			km = &server.KeyManagerConfig{Kind: server.KeyManagerKMS, URI: d.URI, KeyRing: d.KeyRing}
		case server.KeyManagerVault:
			d, err := config.DecodeVaultKeyManager(p)
			if err != nil {
				return nil, nil, err
			}
			km = &server.KeyManagerConfig{Kind: server.KeyManagerVault, TransitMount: d.TransitEnginePath}
		}
	}
	var up *server.UpstreamDiskConfig
	for _, p := range ps.UpstreamAuthorities {
		if p.Type != "disk" {
			continue
		}
		var d config.DiskUpstreamData
		if p.Data == nil {
			return nil, nil, fmt.Errorf("UpstreamAuthority \"disk\" needs plugin_data { cert_file_path = ..., key_file_path = ... }")
		}
		if err := config.DecodePluginData(p, &d); err != nil {
			return nil, nil, err
		}
		up = &server.UpstreamDiskConfig{CertFile: d.CertFilePath, KeyFile: d.KeyFilePath, BundleFile: d.BundleFilePath}
	}
	return km, up, nil
}

// buildSPIREUpstream reads UpstreamAuthority "spire" (nil without one).
func buildSPIREUpstream(ps *config.Plugins) (*server.UpstreamSPIREConfig, error) {
	if ps == nil {
		return nil, nil
	}
	for _, p := range ps.UpstreamAuthorities {
		if p.Type != "spire" {
			continue
		}
		if p.Data == nil {
			return nil, fmt.Errorf("UpstreamAuthority \"spire\" needs plugin_data { server_address = ..., server_port = ..., workload_api_socket = ... }")
		}
		var d config.SPIREUpstreamData
		if err := config.DecodePluginData(p, &d); err != nil {
			return nil, err
		}
		port, err := strconv.Atoi(d.ServerPort)
		if err != nil || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("UpstreamAuthority \"spire\": server_port %q is not a TCP port (1-65535)", d.ServerPort)
		}
		return &server.UpstreamSPIREConfig{ServerAddress: d.ServerAddress, ServerPort: port, WorkloadAPISocket: d.WorkloadAPISocket}, nil
	}
	return nil, nil
}
