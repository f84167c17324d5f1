package config

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// Plugins is SPIRE's `plugins` block. Only its NodeAttestor and (agent)
// WorkloadAttestor blocks are read; other plugin kinds (DataStore,
// KeyManager, ...) are ignored, as Signet has those built in.
type Plugins struct {
	NodeAttestors     []*Plugin `hcl:"NodeAttestor,block"`
	WorkloadAttestors []*Plugin `hcl:"WorkloadAttestor,block"`
	Remain            hcl.Body  `hcl:",remain"`
}

// Plugin is one `<Kind> "<type>" { plugin_data { ... } }` block. Its
// plugin_data is decoded later, by the daemon that knows the type
// (DecodePluginData).
type Plugin struct {
	Type   string      `hcl:"type,label"`
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
	}{{"NodeAttestor", ps.NodeAttestors}, {"WorkloadAttestor", ps.WorkloadAttestors}} {
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
