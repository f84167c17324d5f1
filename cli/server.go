package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/config"
	"github.com/signet-id/signet/privdir"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/telemetry"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func newServerCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "server", Short: "Run and inspect the Signet server"}
	cmd.AddCommand(newServerRunCommand(), newServerValidateCommand(), newServerSnapshotCommand())
	return cmd
}

type serverFlags struct {
	configPath     string
	expandEnv      bool
	trustDomain    string
	dataDir        string
	bindAddress    string
	socketPath     string
	etcdEndpoints  []string
	etcdCert       string
	etcdKey        string
	etcdCA         string
	logLevel       string
	logFormat      string
	allowClassical bool
	metricsAddress string
	profile        string
	caKEKFile      string
	oidcAddress    string
	state          stateFlags
	runtime        runtimeFlags
}

func newServerRunCommand() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the server (embedded etcd unless --etcd-endpoints is given)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, rs, err := f.build(cmd)
			if err != nil {
				return err
			}
			var stop func()
			var reg *prometheus.Registry
			cfg.Logger, reg, stop, err = observability(cmd, rs)
			if err != nil {
				return err
			}
			defer stop()
			cfg.Registry = reg
			srv, err := server.New(cfg)
			if err != nil {
				return err
			}
			if rs.health != nil {
				_, stopHealth, err := serveHealth(rs.health, func() bool { return closed(srv.Ready()) }, cfg.Logger)
				if err != nil {
					return err
				}
				defer stopHealth()
			}
			return srv.Run(cmd.Context())
		},
	}
	f.register(cmd)
	return cmd
}

// newServerValidateCommand is `server validate`: what `server run` checks
// before it starts, without starting anything.
func newServerValidateCommand() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a server configuration (file and flags) without starting anything",
		Long: `Validate reads the configuration file and flags as ` + "`server run`" + ` does and runs every
check that runs before the server starts, reading the files it reads first (ca_kek_path and, with an
external etcd, its client certificate, key and CA). It exits 0 and prints "configuration is valid", or
exits non-zero with the error. Warnings about SPIRE settings that Signet ignores go to stderr.`,
		Example: "  signet server validate --config server.conf\n  signet server validate -config server.conf -expandEnv",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, rs, err := f.build(cmd)
			if err != nil {
				return err
			}
			srv, err := server.New(cfg)
			if err != nil {
				return err
			}
			// The files run reads before it serves: etcd TLS and the CA KEK.
			if err := srv.CheckFiles(); err != nil {
				return err
			}
			if cfg.CAKEKFile != "" && len(cfg.Etcd.Endpoints) == 0 {
				rs.warnings = append(rs.warnings, "ca_kek_path is read only with an external etcd (etcd block); the embedded etcd keeps the CA in data_dir")
			}
			printValid(cmd, rs)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func (f *serverFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.configPath, "config", "", "HCL configuration file (flags override it)")
	fl.BoolVar(&f.expandEnv, "expand-env", false, "expand $VAR and ${VAR} in the configuration file from the environment ($$ is a literal $), as spire-server -expandEnv")
	fl.StringVar(&f.trustDomain, "trust-domain", "", "trust domain, e.g. example.org")
	fl.StringVar(&f.dataDir, "data-dir", "", "directory for embedded etcd data and CA keys (default "+defaults().ServerDataDir+")")
	fl.StringVar(&f.bindAddress, "bind-address", "", "agent listener host:port (default 0.0.0.0:8081)")
	fl.StringVar(&f.socketPath, "socket-path", "", "admin API Unix socket (default <data-dir>/private/api.sock)")
	fl.StringSliceVar(&f.etcdEndpoints, "etcd-endpoints", nil, "external etcd endpoints (comma separated); default embeds etcd")
	fl.StringVar(&f.etcdCert, "etcd-cert", "", "client certificate for external etcd")
	fl.StringVar(&f.etcdKey, "etcd-key", "", "client key for external etcd")
	fl.StringVar(&f.etcdCA, "etcd-ca", "", "CA bundle for external etcd")
	fl.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	fl.StringVar(&f.logFormat, "log-format", "", "text or json (default text)")
	fl.BoolVar(&f.allowClassical, "allow-classical-key-exchange", false, "also accept classical-only TLS key exchange (X25519, P-256); post-quantum X25519MLKEM768 is required otherwise")
	fl.StringVar(&f.metricsAddress, "metrics-address", "", "serve Prometheus metrics on this host:port (e.g. 127.0.0.1:9988)")
	fl.StringVar(&f.oidcAddress, "oidc-address", "", "serve the OIDC discovery provider on host:port (overrides oidc_discovery_provider's listen_address; alone: the server SVID, issuer https://localhost:<port>)")
	fl.StringVar(&f.caKEKFile, "ca-kek-file", "", "file with the 32-byte key that seals the CA in an external etcd shared by replicas")
	f.state.register(fl)
	f.runtime.register(fl)
	fl.StringVar(&f.profile, "credential-profile", "", "classic (ECDSA P-256) or hybrid (ECDSA plus ML-DSA alternative signatures); default classic")
}

// runSettings are a daemon's settings outside its package's Config: the
// logger, /metrics, the health listener, and the configuration file's
// warnings.
type runSettings struct {
	level, format string
	metrics       string
	// profiling is the net/http/pprof address ("" off); profilingRemote
	// allows a non-loopback one.
	profiling       string
	profilingRemote bool
	// memoryLimit is the Go runtime's soft memory limit (0: unchanged).
	memoryLimit int64
	health      *config.HealthChecks
	warnings    []string
}

// fileSettings reads the telemetry and health_checks blocks and the
// warnings of a configuration file into rs; the flag metrics overrides
// the file's Prometheus address.
func (rs *runSettings) fromFile(metricsFlag string, t *config.Telemetry, h *config.HealthChecks, warnings []string) {
	rs.metrics = pick(metricsFlag, t.MetricsAddress())
	if h != nil && h.ListenerEnabled {
		rs.health = h
	}
	rs.warnings = warnings
}

// printValid is the success output of `server|agent validate`.
func printValid(cmd *cobra.Command, rs runSettings) {
	for _, w := range rs.warnings {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
	}
	fmt.Fprintln(cmd.OutOrStdout(), "configuration is valid")
}

func (f *serverFlags) build(cmd *cobra.Command) (server.Config, runSettings, error) {
	var cfg server.Config
	var file config.Server
	var fileInsecure bool
	var fileOIDC *config.OIDCDiscoveryProvider
	var plugins *config.Plugins
	var fileState config.EtcdState
	rs := runSettings{metrics: f.metricsAddress}
	if f.configPath != "" {
		sf, err := config.LoadServerWith(f.configPath, config.Options{ExpandEnv: f.expandEnv})
		if err != nil {
			return cfg, runSettings{}, usageError{err}
		}
		file = *sf.Server
		cfg.Federation = federationFromFile(sf.Server.Federation)
		rs.fromFile(f.metricsAddress, sf.Telemetry, sf.HealthChecks, sf.Warnings)
		plugins = sf.Plugins
		fileOIDC = sf.OIDCDiscoveryProvider
		if v := sf.Vault; v != nil {
			cfg.Vault = &server.VaultConfig{Address: v.Address, Namespace: v.Namespace, CAFile: v.CAFile, Auth: v.Auth,
				TokenFile: v.TokenFile, RoleID: v.RoleID, SecretIDFile: v.SecretIDFile, JWTRole: v.JWTRole, JWTMount: v.JWTMount,
				UpstreamPKIMount: v.UpstreamPKIMount}
		}
		if sf.Limits != nil {
			cfg.Limits = limitsFromFile(sf.Limits)
		}
		if fileState, err = sf.Etcd.State(); err != nil { // checked by LoadServer
			return cfg, runSettings{}, usageError{err}
		}
		if sf.Etcd != nil {
			cfg.Etcd = server.EtcdConfig{Endpoints: sf.Etcd.Endpoints, CertFile: sf.Etcd.CertFile, KeyFile: sf.Etcd.KeyFile, CAFile: sf.Etcd.CAFile}
			fileInsecure = sf.Etcd.Insecure
		}
	}
	td := pick(f.trustDomain, file.TrustDomain, "")
	if td == "" {
		return cfg, runSettings{}, usageError{errors.New("a trust domain is required: pass --trust-domain example.org or set trust_domain in the server block")}
	}
	var err error
	cfg.TrustDomain, err = spiffeid.TrustDomainFromString(td)
	if err != nil {
		return cfg, runSettings{}, usageError{fmt.Errorf("invalid trust domain %q: %w", td, err)}
	}
	if cfg.NodeAttestors, err = buildServerNodeAttestors(cfg.TrustDomain, plugins); err != nil {
		return cfg, runSettings{}, usageError{fmt.Errorf("%s: %w", f.configPath, err)}
	}
	if cfg.KeyManager, cfg.UpstreamDisk, err = buildKeyCustody(plugins); err != nil {
		return cfg, runSettings{}, usageError{fmt.Errorf("%s: %w", f.configPath, err)}
	}
	if cfg.UpstreamSPIRE, err = buildSPIREUpstream(plugins); err != nil {
		return cfg, runSettings{}, usageError{fmt.Errorf("%s: %w", f.configPath, err)}
	}
	if cfg.Notifiers, err = buildNotifiers(plugins); err != nil {
		return cfg, runSettings{}, usageError{fmt.Errorf("%s: %w", f.configPath, err)}
	}
	cfg.DataDir = pick(f.dataDir, file.DataDir, defaults().ServerDataDir)
	bind := strings.Trim(file.BindAddress, "[]")
	if bind != "" || file.BindPort != 0 {
		if bind == "" {
			bind = "0.0.0.0"
		}
		port := file.BindPort
		if port == 0 {
			port = 8081
		}
		bind = net.JoinHostPort(bind, strconv.Itoa(port))
	}
	cfg.BindAddress = pick(f.bindAddress, bind, "0.0.0.0:8081")
	if _, _, err := net.SplitHostPort(cfg.BindAddress); err != nil {
		return cfg, runSettings{}, usageError{fmt.Errorf("invalid --bind-address %q: want host:port", cfg.BindAddress)}
	}
	cfg.AdminSocket = pick(f.socketPath, file.SocketPath, privdir.AdminSocket(cfg.DataDir))
	cfg.CAKEKFile = pick(f.caKEKFile, file.CAKEKPath)
	cfg.OIDC = oidcFromFile(fileOIDC, f.oidcAddress)
	cfg.JWTIssuer = file.JWTIssuer
	if len(f.etcdEndpoints) > 0 {
		cfg.Etcd = server.EtcdConfig{Endpoints: f.etcdEndpoints, CertFile: f.etcdCert, KeyFile: f.etcdKey, CAFile: f.etcdCA}
	}
	for _, d := range []struct {
		dst *time.Duration
		v   string
	}{{&cfg.CATTL, file.CATTL}, {&cfg.X509SVIDTTL, file.DefaultX509SVIDTTL}, {&cfg.JWTSVIDTTL, file.DefaultJWTSVIDTTL}, {&cfg.AgentSVIDTTL, file.AgentTTL}} {
		*d.dst, _ = config.Duration(d.v) // validated by LoadServer
	}
	cfg.TLS.AllowClassical = f.allowClassical || file.AllowClassicalKEX
	if cfg.Profile, err = ca.ParseProfile(pick(f.profile, file.CredentialProfile)); err != nil {
		return cfg, runSettings{}, usageError{err}
	}
	for _, s := range file.AdminIDs {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return cfg, runSettings{}, usageError{fmt.Errorf("invalid admin_ids entry %q: %w", s, err)}
		}
		cfg.AdminIDs = append(cfg.AdminIDs, id)
	}
	f.state.apply(&cfg, fileInsecure, fileState)
	if err := f.runtime.apply(&rs, file.ProfilingAddress, file.ProfilingAllowRemote, file.MemoryLimit); err != nil {
		return cfg, rs, err
	}
	rs.level, rs.format = pick(f.logLevel, file.LogLevel, "info"), pick(f.logFormat, file.LogFormat, "text")
	if err := checkLog(rs); err != nil {
		return cfg, rs, err
	}
	return cfg, rs, nil
}

func pick(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func checkLog(ls runSettings) error {
	switch strings.ToLower(ls.level) {
	case "debug", "info", "warn", "error":
	default:
		return usageError{fmt.Errorf("invalid log level %q: use debug, info, warn or error", ls.level)}
	}
	switch strings.ToLower(ls.format) {
	case "text", "json":
	default:
		return usageError{fmt.Errorf("invalid log format %q: use text or json", ls.format)}
	}
	return nil
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(strings.ToUpper(level)))
	opts := &slog.HandlerOptions{Level: lv}
	if strings.ToLower(format) == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (func(), error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener %s: %w (choose another --metrics-address)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(lis) }()
	log.Info("serving metrics", "address", lis.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
	}, nil
}

// observability builds the logger and the Prometheus registry of a daemon,
// logs the configuration file's warnings, and serves /metrics when
// rs.metrics is set and net/http/pprof when rs.profiling is, after
// applying rs.memoryLimit; stop shuts those listeners.
func observability(cmd *cobra.Command, rs runSettings) (*slog.Logger, *prometheus.Registry, func(), error) {
	log := newLogger(cmd.ErrOrStderr(), rs.level, rs.format)
	for _, w := range rs.warnings {
		log.Warn("configuration setting ignored", "detail", w)
	}
	telemetry.ApplyMemoryLimit(rs.memoryLimit, log)
	_, stopProfiling, err := telemetry.ServeProfiling(rs.profiling, rs.profilingRemote, log)
	if err != nil {
		return nil, nil, nil, err
	}
	addr := rs.metrics
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if addr == "" {
		return log, reg, stopProfiling, nil
	}
	stop, err := serveMetrics(addr, reg, log)
	if err != nil {
		stopProfiling()
		return nil, nil, nil, err
	}
	return log, reg, func() { stop(); stopProfiling() }, nil
}
