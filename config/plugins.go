package config

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// Plugins is SPIRE's `plugins` block. Its NodeAttestor and (agent)
// WorkloadAttestor blocks are read; every other plugin kind is judged by
// PluginRules: accepted with a warning where Signet's built-in equivalent
// is the same thing, refused with the alternative otherwise.
type Plugins struct {
	// NodeAttestors are `NodeAttestor "<type>" { plugin_data { ... } }`
	// blocks: any number on the server (join_token is always served),
	// at most one on the agent.
	NodeAttestors []*Plugin `hcl:"NodeAttestor,block"`
	// WorkloadAttestors are the agent's `WorkloadAttestor "<type>"`
	// blocks (default: unix).
	WorkloadAttestors []*Plugin `hcl:"WorkloadAttestor,block"`
	// KeyManagers are `KeyManager "<type>"` blocks (at most one): the
	// server reads "kms" and "hashicorp_vault"; the others are judged by
	// the plugin table.
	KeyManagers []*Plugin `hcl:"KeyManager,block"`
	// UpstreamAuthorities are `UpstreamAuthority "<type>"` blocks (at
	// most one): the server reads "disk" and "spire".
	UpstreamAuthorities []*Plugin `hcl:"UpstreamAuthority,block"`
	// Notifiers are the server's `Notifier "<type>"` blocks: only
	// "k8sbundle" is read (see the plugin kinds table); its settings are
	// namespace, config_map, config_map_key and kube_config_file_path.
	Notifiers []*Plugin `hcl:"Notifier,block"`
	Remain    hcl.Body  `hcl:",remain"`
}

// Plugin is one `<Kind> "<type>" { plugin_data { ... } }` block. Its
// plugin_data is decoded later, by the daemon that knows the type
// (DecodePluginData).
type Plugin struct {
	// Type is the block's label: the plugin's name, e.g. x509pop.
	Type string `hcl:"type,label"`
	// Data is the plugin's settings, as in SPIRE (see docs/spire-compat.md).
	Data   *PluginData `hcl:"plugin_data,block"`
	Remain hcl.Body    `hcl:",remain"`
	// kind is the block's name (NodeAttestor, WorkloadAttestor), set
	// when the file is checked.
	kind string
}

// Kind is the plugin kind of the block: NodeAttestor or WorkloadAttestor.
func (p *Plugin) Kind() string {
	if p.kind == "" {
		return "NodeAttestor"
	}
	return p.kind
}

// PluginData is a plugin's `plugin_data` block, undecoded.
type PluginData struct {
	Body hcl.Body `hcl:",remain"`
}

// check refuses settings of an external plugin (plugin_cmd, ...):
// Signet's plugins are built in.
func (p *Plugin) check(kind string) error {
	if p.Remain == nil {
		return nil
	}
	attrs, _ := p.Remain.JustAttributes()
	for name, a := range attrs {
		if name == "plugin_data" {
			return fmt.Errorf("%s: %s %q: write plugin_data as a block, without =: plugin_data { ... }", a.Range.String(), kind, p.Type)
		}
		return fmt.Errorf("%s: %s %q: %q is not supported (Signet's plugins are built in; only plugin_data is read)", a.Range.String(), kind, p.Type, name)
	}
	return nil
}

func (ps *Plugins) check() error {
	if ps == nil {
		return nil
	}
	for _, kind := range []struct {
		name    string
		plugins []*Plugin
	}{{"NodeAttestor", ps.NodeAttestors}, {"WorkloadAttestor", ps.WorkloadAttestors}, {"KeyManager", ps.KeyManagers}, {"UpstreamAuthority", ps.UpstreamAuthorities}, {"Notifier", ps.Notifiers}} {
		if (kind.name == "KeyManager" || kind.name == "UpstreamAuthority") && len(kind.plugins) > 1 {
			return fmt.Errorf("plugins: at most one %s block, found %d (%q and %q)", kind.name, len(kind.plugins), kind.plugins[0].Type, kind.plugins[1].Type)
		}
		seen := map[string]bool{}
		for _, p := range kind.plugins {
			p.kind = kind.name
			if seen[p.Type] {
				return fmt.Errorf("%s %q is configured twice", kind.name, p.Type)
			}
			seen[p.Type] = true
			if err := p.check(kind.name); err != nil {
				return err
			}
		}
	}
	return nil
}

// DecodePluginData decodes p's plugin_data into v (a pointer to a struct
// with hcl tags); no plugin_data leaves v as it is.
func DecodePluginData(p *Plugin, v any) error {
	if p.Data == nil || p.Data.Body == nil {
		return nil
	}
	if diags := gohcl.DecodeBody(p.Data.Body, nil, v); diags.HasErrors() {
		return fmt.Errorf("config: %s %q: plugin_data: %s", p.Kind(), p.Type, diags.Error())
	}
	return nil
}
