package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// PluginRule says what Signet does with one SPIRE plugin kind (and type)
// found in a `plugins` block: read it, accept it with a warning because
// Signet's built-in equivalent is the same thing, or refuse it, naming the
// alternative. PluginRules is the one table; the errors, the warnings and
// docs/config.md come from it.
type PluginRule struct {
	// Kind is SPIRE's plugin kind, e.g. DataStore.
	Kind string
	// Type is the plugin type the rule matches; "" matches any other.
	Type string
	// Side is "server", "agent" or "" for both.
	Side string
	// Verdict is "read", "accepted" (ignored with a warning) or "refused".
	Verdict string
	// Says is the warning or the error's alternative, for the operator.
	Says string
	// match narrows a rule to some plugin_data (nil: every block).
	match func(*Plugin) bool
}

// Verdicts of a PluginRule.
const (
	VerdictRead     = "read"
	VerdictAccepted = "accepted"
	VerdictRefused  = "refused"
)

// PluginRules is the table of SPIRE plugin kinds, most specific first.
func PluginRules() []PluginRule {
	return []PluginRule{
		{Kind: "NodeAttestor", Verdict: VerdictRead, Says: "the attestation method of that name (see the NodeAttestor table in docs/spire-compat.md); an unknown type is refused with the list of supported ones"},
		{Kind: "WorkloadAttestor", Side: "agent", Verdict: VerdictRead, Says: "the workload attestor of that name; every configured attestor runs and the selectors are their union"},
		{Kind: "DataStore", Type: "sql", Side: "server", Verdict: VerdictAccepted, match: sqlite,
			Says: "Signet keeps its state in etcd, embedded under data_dir unless an `etcd` block names a cluster; the SQLite database is not read (nothing is migrated from it)"},
		{Kind: "DataStore", Side: "server", Verdict: VerdictRefused,
			Says: "Signet keeps its state in etcd, not in SQL: remove the block to use the embedded etcd under data_dir, or share state between servers with an `etcd { endpoints = [...] }` block"},
		{Kind: "KeyManager", Type: "kms", Side: "server", Verdict: VerdictRead,
			Says: "Signet's key manager over go.step.sm/crypto/kms: `plugin_data { uri = \"pkcs11:module-path=...;token=...?pin-source=/path/to/pin\" }` (or awskms:, cloudkms: with key_ring, azurekms: in binaries built with -tags signet_cloudkms); the CA and JWT keys are created there and never leave it (docs/key-custody.md)"},
		{Kind: "KeyManager", Type: "hashicorp_vault", Side: "server", Verdict: VerdictRead,
			Says: "Vault's Transit engine holds the CA and JWT keys (plugin_data transit_engine_path, default transit); Vault is reached and logged in to through the `vault` block (auth token or approle), not plugin_data"},
		{Kind: "KeyManager", Type: "disk", Side: "server", Verdict: VerdictAccepted,
			Says: "Signet keeps the CA keys in a file under data_dir (ca/ca.json, mode 0600), or sealed in etcd with ca_kek_path; keys_path is not read"},
		{Kind: "KeyManager", Type: "disk", Side: "agent", Verdict: VerdictAccepted,
			Says: "the agent keeps its SVID key in a file under data_dir; directory is not read"},
		{Kind: "KeyManager", Type: "memory", Verdict: VerdictRefused,
			Says: "Signet keeps its keys on disk under data_dir (the server can seal its CA in etcd with ca_kek_path, or hold it in a KeyManager \"kms\" or \"hashicorp_vault\") and has no memory-only mode: remove the block if keys on disk are acceptable"},
		{Kind: "KeyManager", Side: "server", Verdict: VerdictRefused,
			Says: "use KeyManager \"kms\" (PKCS#11, and awskms, cloudkms, azurekms URIs) or KeyManager \"hashicorp_vault\" (Vault Transit); SPIRE's aws_kms, gcp_kms and azure_key_vault map to kms URIs (docs/key-custody.md)"},
		{Kind: "KeyManager", Verdict: VerdictRefused,
			Says: "the agent keeps its SVID key under data_dir: use KeyManager \"disk\" or remove the block"},
		{Kind: "UpstreamAuthority", Type: "disk", Side: "server", Verdict: VerdictRead,
			Says: "an operator-provided CA signs Signet's intermediate: plugin_data cert_file_path, key_file_path (mode 0600) and, when the certificate is not self-signed, bundle_file_path (its roots), as in SPIRE"},
		{Kind: "UpstreamAuthority", Type: "spire", Side: "server", Verdict: VerdictRead,
			Says: "an upstream SPIRE server signs Signet's intermediate through a downstream entry: plugin_data server_address, server_port and workload_api_socket (a Workload API serving this server an entry with downstream = true), as in SPIRE"},
		{Kind: "UpstreamAuthority", Type: "vault", Side: "server", Verdict: VerdictRefused,
			Says: "Vault PKI signs Signet's CA through the `vault` block: set `vault { upstream_pki_mount = \"pki\" ... }` and remove this block"},
		{Kind: "UpstreamAuthority", Side: "server", Verdict: VerdictRefused,
			Says: "the upstream authority is UpstreamAuthority \"disk\", UpstreamAuthority \"spire\" or Vault PKI (`vault { upstream_pki_mount = ... }`); without one Signet's CA is self-signed"},
		{Kind: "Notifier", Type: "k8sbundle", Side: "server", Verdict: VerdictRead,
			Says: "the leading server writes the bundle's X.509 authorities (PEM) into a ConfigMap on every change, creating it if missing: plugin_data namespace (default spire), config_map (default spire-bundle), config_map_key (default bundle.crt), kube_config_file_path (default: the pod's in-cluster configuration), as in SPIRE; webhook_label, api_service_label and clusters are refused (docs/k8sbundle.md)"},
		{Kind: "Notifier", Side: "server", Verdict: VerdictRefused, Says: "the only notifier is Notifier \"k8sbundle\" (a ConfigMap in the cluster); otherwise remove the block and publish the bundle with `signet bundle show`"},
		{Kind: "BundlePublisher", Side: "server", Verdict: VerdictRefused, Says: "bundle publishers are not supported: remove the block (publish the bundle with `signet bundle show` instead)"},
		{Kind: "CredentialComposer", Side: "server", Verdict: VerdictRefused, Says: "credential composers are not supported: remove the block"},
		{Kind: "SVIDStore", Side: "agent", Verdict: VerdictRefused, Says: "SVID stores are not supported: remove the block (workloads fetch SVIDs over the Workload API)"},
	}
}

// sqlite matches a DataStore "sql" block whose database_type is sqlite3
// (SPIRE's single-server setup), with plugin_data written as a block or,
// as SPIRE's HCL1 also allows, as an attribute (plugin_data = { ... }).
func sqlite(p *Plugin) bool {
	var d struct {
		DatabaseType string   `hcl:"database_type,optional"`
		Remain       hcl.Body `hcl:",remain"`
	}
	if err := DecodePluginData(p, &d); err != nil {
		return false
	}
	if p.Data == nil && p.Remain != nil {
		attrs, _ := p.Remain.JustAttributes()
		if a, ok := attrs["plugin_data"]; ok {
			var m map[string]string
			if diags := gohcl.DecodeExpression(a.Expr, nil, &m); diags.HasErrors() {
				return false
			}
			d.DatabaseType = m["database_type"]
		}
	}
	return d.DatabaseType == "sqlite3"
}

// pluginKinds lists the plugin kinds PluginRules knows.
func pluginKinds() []string {
	var out []string
	for _, r := range PluginRules() {
		if !slices.Contains(out, r.Kind) {
			out = append(out, r.Kind)
		}
	}
	return out
}

// judge applies PluginRules to one block of kind on side: it returns a
// warning for an accepted block, an error for a refused one, or neither
// for a block Signet reads.
func judge(side, kind string, p *Plugin, rng hcl.Range) (warning string, err error) {
	known := false
	for _, r := range PluginRules() {
		if r.Kind != kind {
			continue
		}
		known = true
		if r.Side != "" && r.Side != side || r.Type != "" && r.Type != p.Type || r.match != nil && !r.match(p) {
			continue
		}
		switch r.Verdict {
		case VerdictAccepted:
			return fmt.Sprintf("%s: plugins: %s %q is ignored: %s", rng.String(), kind, p.Type, r.Says), nil
		case VerdictRefused:
			return "", fmt.Errorf("%s: plugins: %s %q is not supported: %s", rng.String(), kind, p.Type, r.Says)
		}
		return "", nil
	}
	if known {
		other := "server"
		if side == "server" {
			other = "agent"
		}
		return "", fmt.Errorf("%s: plugins: %s %q belongs in the %s's configuration, not the %s's", rng.String(), kind, p.Type, other, side)
	}
	return "", fmt.Errorf("%s: plugins: unknown plugin kind %q (SPIRE's kinds: %s)", rng.String(), kind, strings.Join(pluginKinds(), ", "))
}
