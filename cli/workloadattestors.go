package cli

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attest/systemd"
	"github.com/signet-id/signet/attest/unix"
	"github.com/signet-id/signet/config"
)

// workloadAttestor builds one workload attestor from its WorkloadAttestor
// block.
type workloadAttestor func(p *config.Plugin, log *slog.Logger) (agent.WorkloadAttestor, error)

// unixPluginData is the unix WorkloadAttestor's plugin_data, as SPIRE's.
type unixPluginData struct {
	DiscoverWorkloadPath bool  `hcl:"discover_workload_path,optional"`
	WorkloadSizeLimit    int64 `hcl:"workload_size_limit,optional"`
}

// systemdPluginData is the systemd WorkloadAttestor's plugin_data. SPIRE's
// takes none; bus_address is Signet's (default: the system bus).
type systemdPluginData struct {
	BusAddress string `hcl:"bus_address,optional"`
}

// agentWorkloadAttestors is the table of WorkloadAttestor types the
// agent's `plugins` block may name.
func agentWorkloadAttestors() map[string]workloadAttestor {
	return map[string]workloadAttestor{
		unix.SelectorType: func(p *config.Plugin, log *slog.Logger) (agent.WorkloadAttestor, error) {
			d := unixPluginData{DiscoverWorkloadPath: true}
			if err := config.DecodePluginData(p, &d); err != nil {
				return nil, err
			}
			opts := []unix.Option{unix.WithLogger(log), unix.WithWorkloadPath(d.DiscoverWorkloadPath)}
			if d.WorkloadSizeLimit < 0 {
				return nil, fmt.Errorf("workload_size_limit %d is negative", d.WorkloadSizeLimit)
			}
			if d.WorkloadSizeLimit > 0 {
				opts = append(opts, unix.WithSizeLimit(d.WorkloadSizeLimit))
			}
			return unix.New(opts...), nil
		},
		systemd.SelectorType: func(p *config.Plugin, log *slog.Logger) (agent.WorkloadAttestor, error) {
			var d systemdPluginData
			if err := config.DecodePluginData(p, &d); err != nil {
				return nil, err
			}
			if d.BusAddress != "" && !strings.Contains(d.BusAddress, ":") {
				return nil, fmt.Errorf("bus_address %q is not a D-Bus address (e.g. unix:path=/run/dbus/system_bus_socket)", d.BusAddress)
			}
			return systemd.New(systemd.WithBusAddress(d.BusAddress), systemd.WithLogger(log)), nil
		},
	}
}

// buildWorkloadAttestors returns the attestors the plugins block
// configures; nil (the agent's default, unix) when it names none.
func buildWorkloadAttestors(ps *config.Plugins, log *slog.Logger) (agent.WorkloadAttestor, error) {
	if ps == nil || len(ps.WorkloadAttestors) == 0 {
		return nil, nil
	}
	table := agentWorkloadAttestors()
	var out agent.Attestors
	for _, p := range ps.WorkloadAttestors {
		build, ok := table[p.Type]
		if !ok {
			return nil, unknownPlugin("WorkloadAttestor", p.Type, table)
		}
		a, err := build(p, log)
		if err != nil {
			return nil, fmt.Errorf("config: WorkloadAttestor %q: %w", p.Type, err)
		}
		out = append(out, agent.NamedAttestor{Type: p.Type, Attestor: a})
	}
	return out, nil
}
