package cli

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/agent/sds"
	"github.com/signet-id/signet/agent/workloadapi"
	"github.com/signet-id/signet/config"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.step.sm/crypto/pemutil"
)

func newAgentCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "Run the agent, or manage agents on a server"}
	cmd.AddCommand(newAgentRunCommand(), newAgentValidateCommand(), newAgentHealthcheckCommand())
	return cmd
}

type agentFlags struct {
	configPath        string
	expandEnv         bool
	trustDomain       string
	serverAddresses   []string
	joinToken         string
	joinTokenFile     string
	dataDir           string
	socketPath        string
	trustBundle       string
	insecureBootstrap bool
	reattest          bool
	logLevel          string
	logFormat         string
	allowClassical    bool
	metricsAddress    string
	workloadLimits    workloadapi.Limits
	runtime           runtimeFlags
	// plugins is the configuration file's plugins block, read by build.
	plugins *config.Plugins
}

func newAgentRunCommand() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent: attest to the server and serve the Workload API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, rs, err := f.build()
			if err != nil {
				return err
			}
			log, reg, stop, err := observability(cmd, rs)
			if err != nil {
				return err
			}
			defer stop()
			cfg.Logger, cfg.Registry = log, reg
			if cfg.Attestor, err = buildWorkloadAttestors(f.plugins, log); err != nil {
				return usageError{fmt.Errorf("%s: %w", f.configPath, err)}
			}
			warnJoinTokenFlag(log, &f)
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			if rs.health != nil {
				_, stopHealth, err := serveHealth(rs.health, func() bool {
					// Ready once the Workload API serves and the agent holds
					// a valid SVID and bundle (the health service's check).
					return closed(a.Ready()) && a.Healthy() == nil
				}, log)
				if err != nil {
					return err
				}
				defer stopHealth()
			}
			return a.Run(cmd.Context())
		},
	}
	f.register(cmd)
	return cmd
}

// newAgentValidateCommand is `agent validate`: what `agent run` checks
// before it starts, without starting anything.
func newAgentValidateCommand() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check an agent configuration (file and flags) without starting anything",
		Long: `Validate reads the configuration file and flags as ` + "`agent run`" + ` does and runs every
check that runs before the agent starts (plugin blocks, trust bundle, addresses). It exits 0 and
prints "configuration is valid", or exits non-zero with the error.`,
		Example: "  signet agent validate --config agent.conf\n  signet agent validate -config agent.conf -expandEnv",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, rs, err := f.build()
			if err != nil {
				return err
			}
			if _, err := agent.New(cfg); err != nil {
				return err
			}
			printValid(cmd, rs)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func (f *agentFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.configPath, "config", "", "HCL configuration file (flags override it)")
	fl.BoolVar(&f.expandEnv, "expand-env", false, "expand $VAR and ${VAR} in the configuration file from the environment ($$ is a literal $), as spire-agent -expandEnv")
	fl.StringVar(&f.trustDomain, "trust-domain", "", "trust domain, e.g. example.org")
	fl.StringSliceVar(&f.serverAddresses, "server-address", nil, "server host:port; repeat for failover (default 127.0.0.1:8081)")
	fl.StringVar(&f.joinToken, "join-token", "", "`TOKEN` for the first attestation (create one with 'signet token generate'); visible in ps, prefer --join-token-file or $"+JoinTokenEnv)
	fl.StringVar(&f.joinTokenFile, "join-token-file", "", "file holding the join token for the first attestation (also $"+JoinTokenEnv+")")
	fl.StringVar(&f.dataDir, "data-dir", "", "directory for the agent SVID and cached SVIDs (default "+defaults().AgentDataDir+")")
	fl.StringVar(&f.socketPath, "socket-path", "", "Workload API Unix socket (default "+defaults().WorkloadSocket+")")
	fl.StringVar(&f.trustBundle, "trust-bundle", "", "`PEM` file with the server's trust bundle, to verify it on first contact (write it with 'signet bundle show > bundle.pem')")
	fl.BoolVar(&f.insecureBootstrap, "insecure-bootstrap", false, "do not verify the server on first contact (testing only)")
	fl.BoolVar(&f.reattest, "reattest", false, "discard the agent SVID in the data directory and attest again (with a new --join-token)")
	fl.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	fl.StringVar(&f.logFormat, "log-format", "", "text or json (default text)")
	fl.BoolVar(&f.allowClassical, "allow-classical-key-exchange", false, "also offer classical-only TLS key exchange")
	fl.StringVar(&f.metricsAddress, "metrics-address", "", "serve Prometheus metrics on this host:port")
	addWorkloadLimitFlags(fl, &f.workloadLimits)
	f.runtime.register(fl)
}

func (f *agentFlags) build() (agent.Config, runSettings, error) {
	var cfg agent.Config
	var file config.Agent
	rs := runSettings{metrics: f.metricsAddress}
	if f.configPath != "" {
		af, err := config.LoadAgentWith(f.configPath, config.Options{ExpandEnv: f.expandEnv})
		if err != nil {
			return cfg, runSettings{}, usageError{err}
		}
		file = *af.Agent
		rs.fromFile(f.metricsAddress, af.Telemetry, af.HealthChecks, af.Warnings)
		if cfg.NodeEvidence, err = buildAgentNodeEvidence(af.Plugins); err != nil {
			return cfg, runSettings{}, usageError{fmt.Errorf("%s: %w", f.configPath, err)}
		}
		// Workload attestors are built once the logger exists; an
		// unknown type or bad plugin_data is refused here already.
		if _, err = buildWorkloadAttestors(af.Plugins, nil); err != nil {
			return cfg, runSettings{}, usageError{fmt.Errorf("%s: %w", f.configPath, err)}
		}
		f.plugins = af.Plugins
	}
	td := pick(f.trustDomain, file.TrustDomain)
	if td == "" {
		return cfg, runSettings{}, usageError{errors.New("a trust domain is required: pass --trust-domain example.org or set trust_domain in the agent block")}
	}
	var err error
	cfg.TrustDomain, err = spiffeid.TrustDomainFromString(td)
	if err != nil {
		return cfg, runSettings{}, usageError{fmt.Errorf("invalid trust domain %q: %w", td, err)}
	}
	cfg.ServerAddresses = f.serverAddresses
	if len(cfg.ServerAddresses) == 0 {
		cfg.ServerAddresses = file.ServerAddresses
	}
	if len(cfg.ServerAddresses) == 0 && file.ServerAddress != "" {
		port := file.ServerPort
		if port == 0 {
			port = 8081
		}
		cfg.ServerAddresses = []string{net.JoinHostPort(strings.Trim(file.ServerAddress, "[]"), strconv.Itoa(port))}
	}
	if len(cfg.ServerAddresses) == 0 {
		cfg.ServerAddresses = []string{"127.0.0.1:8081"}
	}
	for _, a := range cfg.ServerAddresses {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return cfg, runSettings{}, usageError{fmt.Errorf("invalid server address %q: want host:port", a)}
		}
	}
	if cfg.JoinToken, err = f.resolveJoinToken(file); err != nil {
		return cfg, runSettings{}, err
	}
	cfg.DataDir = pick(f.dataDir, file.DataDir, defaults().AgentDataDir)
	cfg.SocketPath = pick(f.socketPath, file.SocketPath, defaults().WorkloadSocket)
	cfg.InsecureBootstrap = f.insecureBootstrap || file.InsecureBootstrap
	cfg.Reattest = f.reattest
	cfg.AllowClassicalKEX = f.allowClassical || file.AllowClassicalKEX
	cfg.WorkloadLimits = f.workloadLimits
	cfg.X509SVIDCacheMaxSize = file.X509SVIDCacheMaxSize
	if s := file.SDS; s != nil {
		cfg.SDS = sds.Settings{DefaultSVIDName: s.DefaultSVIDName, DefaultBundleName: s.DefaultBundleName,
			DefaultAllBundlesName: s.DefaultAllBundlesName, DisableSPIFFECertValidation: s.DisableSPIFFECertValidation}
		if err := cfg.SDS.Validate(); err != nil {
			return cfg, runSettings{}, usageError{fmt.Errorf("%s: agent: %w", f.configPath, err)}
		}
	}
	if cfg.InsecureBootstrap && pick(f.trustBundle, file.TrustBundlePath) != "" {
		return cfg, runSettings{}, usageError{errors.New("insecure_bootstrap (--insecure-bootstrap) and trust_bundle_path (--trust-bundle) " +
			"cannot both be set: the bundle verifies the server on first contact, insecure bootstrap skips that check; remove insecure_bootstrap")}
	}
	if p := pick(f.trustBundle, file.TrustBundlePath); p != "" {
		certs, err := readPEMCerts(p)
		if err != nil {
			return cfg, runSettings{}, usageError{err}
		}
		cfg.TrustBundle = certs
	}
	if err := f.runtime.apply(&rs, file.ProfilingAddress, file.ProfilingAllowRemote, file.MemoryLimit); err != nil {
		return cfg, rs, err
	}
	rs.level, rs.format = pick(f.logLevel, file.LogLevel, "info"), pick(f.logFormat, file.LogFormat, "text")
	return cfg, rs, checkLog(rs)
}

func readPEMCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	certs, err := pemutil.ParseCertificateBundle(data)
	if pe := (*pemutil.InvalidPEMError)(nil); errors.As(err, &pe) && pe.Err == nil {
		return nil, fmt.Errorf("trust bundle %s holds no PEM certificates (write it with `signet bundle show --format pem`)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("trust bundle %s: %w", path, err)
	}
	return certs, nil
}
