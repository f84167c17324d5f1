package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attest/docker"
	"github.com/signet-id/signet/attest/k8s"
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
		k8s.SelectorType:    buildK8sAttestor,
		docker.SelectorType: buildDockerAttestor,
	}
}

// k8sPluginData is the k8s WorkloadAttestor's plugin_data, as SPIRE's
// (its experimental sigstore block is not supported).
type k8sPluginData struct {
	KubeletReadOnlyPort         int    `hcl:"kubelet_read_only_port,optional"`
	KubeletSecurePort           int    `hcl:"kubelet_secure_port,optional"`
	MaxPollAttempts             int    `hcl:"max_poll_attempts,optional"`
	PollRetryInterval           string `hcl:"poll_retry_interval,optional"`
	KubeletCAPath               string `hcl:"kubelet_ca_path,optional"`
	SkipKubeletVerification     bool   `hcl:"skip_kubelet_verification,optional"`
	TokenPath                   string `hcl:"token_path,optional"`
	CertificatePath             string `hcl:"certificate_path,optional"`
	PrivateKeyPath              string `hcl:"private_key_path,optional"`
	UseAnonymousAuthentication  bool   `hcl:"use_anonymous_authentication,optional"`
	NodeNameEnv                 string `hcl:"node_name_env,optional"`
	NodeName                    string `hcl:"node_name,optional"`
	ReloadInterval              string `hcl:"reload_interval,optional"`
	DisableContainerSelectors   bool   `hcl:"disable_container_selectors,optional"`
	UseNewContainerLocator      *bool  `hcl:"use_new_container_locator,optional"`
	VerboseContainerLocatorLogs bool   `hcl:"verbose_container_locator_logs,optional"`
}

// defaultNodeNameEnv names the variable holding the node name, as SPIRE's
// (a Downward API field in the agent's DaemonSet).
const defaultNodeNameEnv = "MY_NODE_NAME"

func buildK8sAttestor(p *config.Plugin, log *slog.Logger) (agent.WorkloadAttestor, error) {
	var d k8sPluginData
	if err := config.DecodePluginData(p, &d); err != nil {
		return nil, err
	}
	if err := newContainerLocatorOnly(d.UseNewContainerLocator); err != nil {
		return nil, err
	}
	poll, err := config.Duration(d.PollRetryInterval)
	if err != nil {
		return nil, fmt.Errorf("poll_retry_interval: %w", err)
	}
	reload, err := config.Duration(d.ReloadInterval)
	if err != nil {
		return nil, fmt.Errorf("reload_interval: %w", err)
	}
	nodeName := d.NodeName
	if nodeName == "" {
		env := d.NodeNameEnv
		if env == "" {
			env = defaultNodeNameEnv
		}
		nodeName = os.Getenv(env)
	}
	return k8s.New(k8s.Config{
		ReadOnlyPort:               d.KubeletReadOnlyPort,
		SecurePort:                 d.KubeletSecurePort,
		NodeName:                   nodeName,
		SkipKubeletVerification:    d.SkipKubeletVerification,
		KubeletCAPath:              d.KubeletCAPath,
		TokenPath:                  d.TokenPath,
		CertificatePath:            d.CertificatePath,
		PrivateKeyPath:             d.PrivateKeyPath,
		UseAnonymousAuthentication: d.UseAnonymousAuthentication,
		MaxPollAttempts:            d.MaxPollAttempts,
		PollRetryInterval:          poll,
		ReloadInterval:             reload,
		DisableContainerSelectors:  d.DisableContainerSelectors,
		Logger:                     log,
	})
}

// dockerPluginData is the docker WorkloadAttestor's plugin_data, as
// SPIRE's on Unix (without the experimental sigstore block).
type dockerPluginData struct {
	DockerSocketPath            string   `hcl:"docker_socket_path,optional"`
	DockerVersion               string   `hcl:"docker_version,optional"`
	ContainerIDCgroupMatchers   []string `hcl:"container_id_cgroup_matchers,optional"`
	UseNewContainerLocator      *bool    `hcl:"use_new_container_locator,optional"`
	VerboseContainerLocatorLogs bool     `hcl:"verbose_container_locator_logs,optional"`
}

func buildDockerAttestor(p *config.Plugin, log *slog.Logger) (agent.WorkloadAttestor, error) {
	var d dockerPluginData
	if err := config.DecodePluginData(p, &d); err != nil {
		return nil, err
	}
	if err := newContainerLocatorOnly(d.UseNewContainerLocator); err != nil {
		return nil, err
	}
	if len(d.ContainerIDCgroupMatchers) > 0 {
		return nil, errors.New("container_id_cgroup_matchers belong to SPIRE's legacy container locator, which Signet does not have")
	}
	return docker.New(docker.Config{SocketPath: d.DockerSocketPath, Version: d.DockerVersion, Logger: log})
}

// newContainerLocatorOnly refuses use_new_container_locator = false:
// Signet has only SPIRE's new locator (internal/container).
func newContainerLocatorOnly(v *bool) error {
	if v != nil && !*v {
		return errors.New("use_new_container_locator = false (SPIRE's legacy container locator) is not supported")
	}
	return nil
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
