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
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func newServerCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "server", Short: "Run and inspect the Signet server"}
	cmd.AddCommand(newServerRunCommand())
	return cmd
}

type serverFlags struct {
	configPath     string
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
}

func newServerRunCommand() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the server (embedded etcd unless --etcd-endpoints is given)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, logCfg, err := f.build(cmd)
			if err != nil {
				return err
			}
			var stop func()
			var reg *prometheus.Registry
			cfg.Logger, reg, stop, err = observability(cmd, logCfg, f.metricsAddress)
			if err != nil {
				return err
			}
			defer stop()
			cfg.Registry = reg
			srv, err := server.New(cfg)
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configPath, "config", "", "HCL configuration file (flags override it)")
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
	fl.StringVar(&f.oidcAddress, "oidc-address", "", "serve OIDC discovery and JWKS over HTTPS on host:port (for Vault's jwt auth)")
	fl.StringVar(&f.caKEKFile, "ca-kek-file", "", "file with the 32-byte key that seals the CA in an external etcd shared by replicas")
	f.state.register(fl)
	fl.StringVar(&f.profile, "credential-profile", "", "classic (ECDSA P-256) or hybrid (ECDSA plus ML-DSA alternative signatures); default classic")
	return cmd
}

type logSettings struct{ level, format string }

func (f *serverFlags) build(cmd *cobra.Command) (server.Config, logSettings, error) {
	var cfg server.Config
	var file config.Server
	var fileInsecure bool
	var plugins *config.Plugins
	if f.configPath != "" {
		sf, err := config.LoadServer(f.configPath)
		if err != nil {
			return cfg, logSettings{}, usageError{err}
		}
		file = *sf.Server
		plugins = sf.Plugins
		if v := sf.Vault; v != nil {
			cfg.Vault = &server.VaultConfig{Address: v.Address, Namespace: v.Namespace, CAFile: v.CAFile, Auth: v.Auth,
				TokenFile: v.TokenFile, RoleID: v.RoleID, SecretIDFile: v.SecretIDFile, JWTRole: v.JWTRole, JWTMount: v.JWTMount,
				UpstreamPKIMount: v.UpstreamPKIMount}
		}
		if sf.Limits != nil {
			cfg.Limits = limitsFromFile(sf.Limits)
		}
		if sf.Etcd != nil {
			cfg.Etcd = server.EtcdConfig{Endpoints: sf.Etcd.Endpoints, CertFile: sf.Etcd.CertFile, KeyFile: sf.Etcd.KeyFile, CAFile: sf.Etcd.CAFile}
			fileInsecure = sf.Etcd.Insecure
		}
	}
	td := pick(f.trustDomain, file.TrustDomain, "")
	if td == "" {
		return cfg, logSettings{}, usageError{errors.New("a trust domain is required: pass --trust-domain example.org or set trust_domain in the server block")}
	}
	var err error
	cfg.TrustDomain, err = spiffeid.TrustDomainFromString(td)
	if err != nil {
		return cfg, logSettings{}, usageError{fmt.Errorf("invalid trust domain %q: %w", td, err)}
	}
	if cfg.NodeAttestors, err = buildServerNodeAttestors(cfg.TrustDomain, plugins); err != nil {
		return cfg, logSettings{}, usageError{fmt.Errorf("%s: %w", f.configPath, err)}
	}
	cfg.DataDir = pick(f.dataDir, file.DataDir, defaults().ServerDataDir)
	bind := file.BindAddress
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
		return cfg, logSettings{}, usageError{fmt.Errorf("invalid --bind-address %q: want host:port", cfg.BindAddress)}
	}
	cfg.AdminSocket = pick(f.socketPath, file.SocketPath, privdir.AdminSocket(cfg.DataDir))
	cfg.CAKEKFile = pick(f.caKEKFile, file.CAKEKPath)
	cfg.OIDCAddress = pick(f.oidcAddress, file.OIDCAddress)
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
		return cfg, logSettings{}, usageError{err}
	}
	for _, s := range file.AdminIDs {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return cfg, logSettings{}, usageError{fmt.Errorf("invalid admin_ids entry %q: %w", s, err)}
		}
		cfg.AdminIDs = append(cfg.AdminIDs, id)
	}
	f.state.apply(&cfg, fileInsecure)
	ls := logSettings{level: pick(f.logLevel, file.LogLevel, "info"), format: pick(f.logFormat, file.LogFormat, "text")}
	if err := checkLog(ls); err != nil {
		return cfg, ls, err
	}
	return cfg, ls, nil
}

func pick(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func checkLog(ls logSettings) error {
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

// observability builds the logger and the Prometheus registry of a daemon
// and serves /metrics when addr is set; stop shuts the metrics server.
func observability(cmd *cobra.Command, ls logSettings, addr string) (*slog.Logger, *prometheus.Registry, func(), error) {
	log := newLogger(cmd.ErrOrStderr(), ls.level, ls.format)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if addr == "" {
		return log, reg, func() {}, nil
	}
	stop, err := serveMetrics(addr, reg, log)
	if err != nil {
		return nil, nil, nil, err
	}
	return log, reg, stop, nil
}
