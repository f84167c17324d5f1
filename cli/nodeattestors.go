package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attest/awsiid"
	"github.com/signet-id/signet/attest/azuremsi"
	"github.com/signet-id/signet/attest/gcpiit"
	"github.com/signet-id/signet/attest/jointoken"
	"github.com/signet-id/signet/attest/sshpop"
	"github.com/signet-id/signet/attest/tpmdevid"
	"github.com/signet-id/signet/attest/x509pop"
	"github.com/signet-id/signet/config"
	agentapi "github.com/signet-id/signet/server/api/agent"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// serverNodeAttestor builds the server half of a node attestation method
// from its plugin block; nil for join_token, which is always served.
type serverNodeAttestor func(td spiffeid.TrustDomain, p *config.Plugin) (agentapi.NodeAttestor, error)

// agentNodeAttestor builds the agent half; nil for join_token, whose
// token comes from the agent block or the flags.
type agentNodeAttestor func(p *config.Plugin) (agent.NodeEvidence, error)

// serverNodeAttestors is the table of NodeAttestor types the server's
// `plugins` block may name.
func serverNodeAttestors() map[string]serverNodeAttestor {
	return map[string]serverNodeAttestor{
		jointoken.Type: nil,
		x509pop.Type: withPluginData(func(td spiffeid.TrustDomain, d x509pop.ServerPluginData) (agentapi.NodeAttestor, error) {
			cfg, err := x509pop.ConfigFromPluginData(td, d)
			if err != nil {
				return nil, err
			}
			return x509pop.NewAttestor(cfg)
		}),
		sshpop.Type: withPluginData(func(td spiffeid.TrustDomain, d sshpop.ServerConfig) (agentapi.NodeAttestor, error) {
			d.TrustDomain = td
			return sshpop.NewAttestor(d)
		}),
		awsiid.Type: withPluginData(func(td spiffeid.TrustDomain, d awsiid.ServerPluginData) (agentapi.NodeAttestor, error) {
			cfg, err := awsiid.ConfigFromPluginData(td, d)
			if err != nil {
				return nil, err
			}
			return awsiid.NewAttestor(cfg)
		}),
		gcpiit.Type: withPluginData(func(td spiffeid.TrustDomain, d gcpiit.ServerPluginData) (agentapi.NodeAttestor, error) {
			cfg, err := gcpiit.ConfigFromPluginData(td, d)
			if err != nil {
				return nil, err
			}
			return gcpiit.NewAttestor(cfg)
		}),
		azuremsi.Type: withPluginData(func(td spiffeid.TrustDomain, d azuremsi.ServerPluginData) (agentapi.NodeAttestor, error) {
			cfg, err := azuremsi.ConfigFromPluginData(td, d)
			if err != nil {
				return nil, err
			}
			return azuremsi.NewAttestor(cfg)
		}),
		tpmdevid.Type: withPluginData(func(td spiffeid.TrustDomain, d tpmdevid.ServerPluginData) (agentapi.NodeAttestor, error) {
			cfg, err := tpmdevid.ConfigFromPluginData(td, d)
			if err != nil {
				return nil, err
			}
			return tpmdevid.NewAttestor(cfg)
		}),
	}
}

// agentNodeAttestors is the table of NodeAttestor types the agent's
// `plugins` block may name.
func agentNodeAttestors() map[string]agentNodeAttestor {
	return map[string]agentNodeAttestor{
		jointoken.Type: nil,
		x509pop.Type: func(p *config.Plugin) (agent.NodeEvidence, error) {
			var d x509pop.AgentPluginData
			if err := config.DecodePluginData(p, &d); err != nil {
				return nil, err
			}
			return x509pop.NewEvidence(d, nil)
		},
		sshpop.Type: func(p *config.Plugin) (agent.NodeEvidence, error) {
			var d sshpop.AgentConfig
			if err := config.DecodePluginData(p, &d); err != nil {
				return nil, err
			}
			return sshpop.NewEvidence(d)
		},
		awsiid.Type: func(p *config.Plugin) (agent.NodeEvidence, error) {
			var d awsiid.AgentPluginData
			if err := config.DecodePluginData(p, &d); err != nil {
				return nil, err
			}
			return awsiid.NewEvidence(d, nil)
		},
		gcpiit.Type: func(p *config.Plugin) (agent.NodeEvidence, error) {
			var d gcpiit.AgentPluginData
			if err := config.DecodePluginData(p, &d); err != nil {
				return nil, err
			}
			return gcpiit.NewEvidence(d, nil)
		},
		azuremsi.Type: func(p *config.Plugin) (agent.NodeEvidence, error) {
			var d azuremsi.AgentPluginData
			if err := config.DecodePluginData(p, &d); err != nil {
				return nil, err
			}
			return azuremsi.NewEvidence(d, nil)
		},
		tpmdevid.Type: func(p *config.Plugin) (agent.NodeEvidence, error) {
			var d tpmdevid.AgentPluginData
			if err := config.DecodePluginData(p, &d); err != nil {
				return nil, err
			}
			return tpmdevid.NewEvidence(d)
		},
	}
}

// withPluginData adapts a constructor of typed plugin_data D to a table
// entry: it decodes the block's plugin_data into D first.
func withPluginData[D any](build func(spiffeid.TrustDomain, D) (agentapi.NodeAttestor, error)) serverNodeAttestor {
	return func(td spiffeid.TrustDomain, p *config.Plugin) (agentapi.NodeAttestor, error) {
		var d D
		if err := config.DecodePluginData(p, &d); err != nil {
			return nil, err
		}
		return build(td, d)
	}
}

func unknownPlugin[V any](kind, typ string, table map[string]V) error {
	names := make([]string, 0, len(table))
	for n := range table {
		names = append(names, n)
	}
	slices.Sort(names)
	return fmt.Errorf("config: unknown %s %q (supported: %s)", kind, typ, strings.Join(names, ", "))
}

// buildServerNodeAttestors returns the attestors the plugins block
// configures, join tokens aside (the server always serves them).
func buildServerNodeAttestors(td spiffeid.TrustDomain, ps *config.Plugins) ([]agentapi.NodeAttestor, error) {
	if ps == nil {
		return nil, nil
	}
	table := serverNodeAttestors()
	var out []agentapi.NodeAttestor
	for _, p := range ps.NodeAttestors {
		build, ok := table[p.Type]
		if !ok {
			return nil, unknownPlugin("NodeAttestor", p.Type, table)
		}
		if build == nil {
			continue
		}
		a, err := build(td, p)
		if err != nil {
			return nil, fmt.Errorf("config: NodeAttestor %q: %w", p.Type, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// buildAgentNodeEvidence returns the evidence the plugins block
// configures; nil for none or join_token.
func buildAgentNodeEvidence(ps *config.Plugins) (agent.NodeEvidence, error) {
	if ps == nil || len(ps.NodeAttestors) == 0 {
		return nil, nil
	}
	table := agentNodeAttestors()
	p := ps.NodeAttestors[0]
	build, ok := table[p.Type]
	if !ok {
		return nil, unknownPlugin("NodeAttestor", p.Type, table)
	}
	if build == nil {
		return nil, nil
	}
	ev, err := build(p)
	if err != nil {
		return nil, fmt.Errorf("config: NodeAttestor %q: %w", p.Type, err)
	}
	return ev, nil
}
