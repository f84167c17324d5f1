package config

import "fmt"

// KMSKeyManagerData is the plugin_data of KeyManager "kms".
type KMSKeyManagerData struct {
	// URI opens the key manager (go.step.sm/crypto/kms): pkcs11:..., or
	// awskms:, cloudkms:, azurekms: in binaries built with -tags
	// signet_cloudkms. The PIN is named by pin-source (a file of mode 0600,
	// or env:NAME), never written in the URI.
	URI string `hcl:"uri"`
	// KeyRing is the Cloud KMS key ring new keys go in
	// (projects/P/locations/L/keyRings/R); cloudkms only.
	KeyRing string `hcl:"key_ring,optional"`
}

// VaultKeyManagerData is the plugin_data of KeyManager "hashicorp_vault"
// (SPIRE's field names). Vault's address and credentials come from the
// `vault` block: vault_addr, namespace and ca_cert_path are refused with
// that advice, and the *_auth blocks are unknown.
type VaultKeyManagerData struct {
	// TransitEnginePath is the Transit engine's mount (default transit).
	TransitEnginePath string `hcl:"transit_engine_path,optional"`
	// KeyIdentifierFile is accepted and not read: Signet records each
	// key's name in the CA state.
	KeyIdentifierFile string `hcl:"key_identifier_file,optional"`
	// KeyIdentifierValue is accepted and not read, as KeyIdentifierFile.
	KeyIdentifierValue string `hcl:"key_identifier_value,optional"`
	// VaultAddr is refused: set the `vault` block's address.
	VaultAddr string `hcl:"vault_addr,optional"`
	// Namespace is refused: set the `vault` block's namespace.
	Namespace string `hcl:"namespace,optional"`
	// CACertPath is refused: set the `vault` block's ca_file.
	CACertPath string `hcl:"ca_cert_path,optional"`
}

// DiskUpstreamData is the plugin_data of UpstreamAuthority "disk", as in
// SPIRE.
type DiskUpstreamData struct {
	// CertFilePath holds the upstream CA certificate (PEM), optionally
	// followed by its intermediates.
	CertFilePath string `hcl:"cert_file_path"`
	// KeyFilePath holds the upstream CA's private key (PEM, mode 0600).
	KeyFilePath string `hcl:"key_file_path"`
	// BundleFilePath holds the roots to publish when the certificate is
	// not self-signed.
	BundleFilePath string `hcl:"bundle_file_path,optional"`
}

// SPIREUpstreamData is the plugin_data of UpstreamAuthority "spire", as in
// SPIRE: the upstream spire-server and the local Workload API socket whose
// agent serves this server an entry with downstream = true.
type SPIREUpstreamData struct {
	ServerAddress     string `hcl:"server_address"`
	ServerPort        string `hcl:"server_port"`
	WorkloadAPISocket string `hcl:"workload_api_socket"`
}

// DecodeVaultKeyManager decodes KeyManager "hashicorp_vault"'s
// plugin_data, refusing SPIRE's connection settings with where they go.
func DecodeVaultKeyManager(p *Plugin) (VaultKeyManagerData, error) {
	var d VaultKeyManagerData
	if err := DecodePluginData(p, &d); err != nil {
		return d, fmt.Errorf("%w (Signet reaches Vault through the `vault` block: address, namespace, ca_file, auth with token_file or approle; never a token in the configuration)", err)
	}
	for _, f := range []struct{ name, value, instead string }{
		{"vault_addr", d.VaultAddr, "address"}, {"namespace", d.Namespace, "namespace"}, {"ca_cert_path", d.CACertPath, "ca_file"},
	} {
		if f.value != "" {
			return d, fmt.Errorf("config: KeyManager \"hashicorp_vault\": plugin_data: %s is not read here: set %s in the `vault` block, which the key manager shares", f.name, f.instead)
		}
	}
	return d, nil
}
