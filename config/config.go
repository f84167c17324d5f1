// Package config reads Signet's HCL configuration files, in the spirit of
// SPIRE's: a `server` or `agent` block with snake_case attributes, and an
// optional `etcd` block for the server. Flags override file values; this
// package only parses and validates the file.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// MaxFileSize bounds configuration files (1 MiB); see also MaxNesting.
const MaxFileSize = 1 << 20

//go:generate go run ./internal/docgen -o ../docs/config.md

// ServerFile is a server configuration file.
type ServerFile struct {
	// Server holds the server's settings.
	Server *Server `hcl:"server,block"`
	// Etcd points the server at an external etcd cluster instead of the
	// embedded one (endpoints), and sizes either: quota, compaction and,
	// for the embedded member, raft snapshots (docs/scaling.md).
	Etcd *Etcd `hcl:"etcd,block"`
	// Vault is the Vault the server brokers secrets from (and, with
	// upstream_pki_mount, its upstream CA).
	Vault *Vault `hcl:"vault,block"`
	// Limits bounds the agent listener against abuse (docs/limits.md).
	Limits *Limits `hcl:"limits,block"`
	// Plugins is SPIRE's plugins block: NodeAttestor blocks are read; the
	// other kinds are accepted or refused as the plugin table says.
	Plugins *Plugins `hcl:"plugins,block"`
	// Telemetry is SPIRE's telemetry block: Prometheus only.
	Telemetry *Telemetry `hcl:"telemetry,block"`
	// HealthChecks is SPIRE's health_checks block: HTTP /live and /ready.
	HealthChecks *HealthChecks `hcl:"health_checks,block"`
	// OIDCDiscoveryProvider serves the OIDC discovery document and the
	// JWKS of the JWT-SVID keys (docs/oidc.md).
	OIDCDiscoveryProvider *OIDCDiscoveryProvider `hcl:"oidc_discovery_provider,block"`
	Remain                hcl.Body               `hcl:",remain"`
	// Warnings lists what the file holds that Signet accepts but ignores
	// (for the daemon to log and validate to print).
	Warnings []string
}

// Server is the `server` block.
type Server struct {
	// TrustDomain is the trust domain the server is the authority of, e.g.
	// example.org (flag --trust-domain). Required.
	TrustDomain string `hcl:"trust_domain,optional"`
	// BindAddress is the host or IP the agent listener binds, without a
	// port (default 0.0.0.0); IPv6 literals as ::1 or [::1].
	BindAddress string `hcl:"bind_address,optional"`
	// BindPort is the agent listener's TCP port (default 8081). The flag
	// --bind-address takes host:port instead.
	BindPort int `hcl:"bind_port,optional"`
	// DataDir holds the embedded etcd and the CA keys (flag --data-dir;
	// default /var/lib/signet/server for root).
	DataDir string `hcl:"data_dir,optional"`
	// SocketPath is the admin API's Unix socket (flag --socket-path;
	// default <data_dir>/private/api.sock).
	SocketPath string `hcl:"socket_path,optional"`
	// CATTL is the X.509 CA's lifetime, a Go duration such as 168h.
	CATTL string `hcl:"ca_ttl,optional"`
	// DefaultX509SVIDTTL is the X.509-SVID lifetime for entries that set
	// none, e.g. 1h.
	DefaultX509SVIDTTL string `hcl:"default_x509_svid_ttl,optional"`
	// DefaultJWTSVIDTTL is the JWT-SVID lifetime for entries that set
	// none, e.g. 5m.
	DefaultJWTSVIDTTL string `hcl:"default_jwt_svid_ttl,optional"`
	// AgentTTL is the agent SVID's lifetime.
	AgentTTL string `hcl:"agent_ttl,optional"`
	// LogLevel is debug, info, warn or error, any case (default info).
	LogLevel string `hcl:"log_level,optional"`
	// LogFormat is text or json (default text).
	LogFormat string `hcl:"log_format,optional"`
	// AllowClassicalKEX also accepts classical-only TLS key exchange
	// (X25519, P-256); otherwise post-quantum X25519MLKEM768 is required.
	AllowClassicalKEX bool `hcl:"allow_classical_key_exchange,optional"`
	// AdminIDs are SPIFFE IDs whose X.509-SVIDs may call the admin API.
	AdminIDs []string `hcl:"admin_ids,optional"`
	// CredentialProfile is classic (ECDSA P-256) or hybrid (ECDSA plus
	// ML-DSA alternative signatures); default classic.
	CredentialProfile string `hcl:"credential_profile,optional"`
	// CAKEKPath is a file with the 32-byte key that seals the CA in an
	// external etcd shared by replicas (flag --ca-kek-file).
	CAKEKPath string `hcl:"ca_kek_path,optional"`
	// JWTIssuer is the iss claim of JWT-SVIDs, an http(s) URL (SPIRE's
	// jwt_issuer; default the oidc_discovery_provider issuer, else none).
	JWTIssuer string `hcl:"jwt_issuer,optional"`
	// Federation is SPIRE's federation block: the bundle endpoint and the
	// federated trust domains.
	Federation *Federation `hcl:"federation,block"`
	// ProfilingAddress serves Go's net/http/pprof endpoints
	// (/debug/pprof/) on this host:port when set (flag
	// --profiling-address; SPIRE's profiling_enabled/profiling_port). Off
	// by default. Must be a loopback address unless
	// profiling_allow_remote is true: the endpoints have no
	// authentication and a heap profile shows memory contents.
	ProfilingAddress string `hcl:"profiling_address,optional"`
	// ProfilingAllowRemote lets profiling_address be a non-loopback
	// address (flag --profiling-allow-remote). Default false.
	ProfilingAllowRemote bool `hcl:"profiling_allow_remote,optional"`
	// MemoryLimit is the Go runtime's soft memory limit, e.g. "512MiB"
	// or "2GiB" (runtime/debug.SetMemoryLimit, as GOMEMLIMIT; this
	// setting wins over GOMEMLIMIT). The garbage collector works harder
	// as the heap nears it; it is not a hard cap. Default: none.
	MemoryLimit string `hcl:"memory_limit,optional"`
	// ProfilingEnabled and ProfilingPort are SPIRE's way to turn
	// profiling on: the same as profiling_address = "localhost:<port>".
	ProfilingEnabled bool `hcl:"profiling_enabled,optional"`
	// ProfilingPort is the port of SPIRE's profiling_enabled (required
	// with it).
	ProfilingPort int `hcl:"profiling_port,optional"`
	// ProfilingFreq and ProfilingNames are SPIRE's settings for writing
	// profiles to files; accepted and ignored (with a warning).
	ProfilingFreq  int      `hcl:"profiling_freq,optional"`
	ProfilingNames []string `hcl:"profiling_names,optional"`
}

// Etcd is the `etcd` block: an external cluster instead of the embedded
// one (endpoints), and the state settings of either (docs/scaling.md).
type Etcd struct {
	// Endpoints are the cluster's client URLs, e.g. https://10.0.0.1:2379.
	// Empty: the embedded member.
	Endpoints []string `hcl:"endpoints,optional"`
	// CertFile is the client certificate (PEM).
	CertFile string `hcl:"cert_file,optional"`
	// KeyFile is the client certificate's key (PEM).
	KeyFile string `hcl:"key_file,optional"`
	// CAFile is the CA bundle that verifies the cluster (PEM).
	CAFile string `hcl:"ca_file,optional"`
	// Insecure accepts plaintext endpoints or no client certificate.
	Insecure bool `hcl:"insecure,optional"`
	// QuotaBackendBytes is the embedded member's backend quota, bytes or
	// a size such as "2GiB" (flag --etcd-quota-bytes; default 2GiB, etcd's).
	// Writes fail with NOSPACE beyond it. With endpoints it is the quota
	// assumed for the quota gauge when the members do not report theirs.
	QuotaBackendBytes string `hcl:"quota_backend_bytes,optional"`
	// AutoCompactionMode is periodic (default: keep
	// auto_compaction_retention of history) or revision (keep the last
	// auto_compaction_retention revisions; embedded member only).
	AutoCompactionMode string `hcl:"auto_compaction_mode,optional"`
	// AutoCompactionRetention is a duration for periodic mode (default
	// "5m"; "0" never compacts; flag --etcd-compaction-retention) or a
	// revision count for revision mode (e.g. "10000"). With endpoints the
	// scheduler leader compacts (periodic only).
	AutoCompactionRetention string `hcl:"auto_compaction_retention,optional"`
	// SnapshotCount is the embedded member's committed transactions
	// between raft snapshots to disk (default 10000, etcd's); the WAL
	// before a snapshot is released. Not with endpoints: set it on the
	// cluster's members.
	SnapshotCount int64 `hcl:"snapshot_count,optional"`
}

// Vault is the `vault` block: the Vault the server brokers secrets from.
// Credentials are read from files, never written in the configuration.
type Vault struct {
	// Address is Vault's URL, e.g. https://vault:8200.
	Address string `hcl:"address"`
	// Namespace is the Vault Enterprise namespace, if any.
	Namespace string `hcl:"namespace,optional"`
	// CAFile is the CA bundle that verifies Vault (PEM).
	CAFile string `hcl:"ca_file,optional"`
	// Auth is how the server logs in: token, approle or jwt.
	Auth string `hcl:"auth"`
	// TokenFile holds the Vault token (auth = "token").
	TokenFile string `hcl:"token_file,optional"`
	// RoleID is the AppRole role ID (auth = "approle").
	RoleID string `hcl:"role_id,optional"`
	// SecretIDFile holds the AppRole secret ID (auth = "approle").
	SecretIDFile string `hcl:"secret_id_file,optional"`
	// JWTRole is the jwt auth role (auth = "jwt").
	JWTRole string `hcl:"jwt_role,optional"`
	// JWTMount is the jwt auth mount path (auth = "jwt").
	JWTMount string `hcl:"jwt_mount,optional"`
	// UpstreamPKIMount makes Vault PKI at this mount sign the CA.
	UpstreamPKIMount string `hcl:"upstream_pki_mount,optional"`
}

// AgentFile is an agent configuration file.
type AgentFile struct {
	// Agent holds the agent's settings.
	Agent *Agent `hcl:"agent,block"`
	// Plugins is SPIRE's plugins block: the NodeAttestor block (at most
	// one) and WorkloadAttestor blocks are read; the other kinds are
	// accepted or refused as the plugin table says.
	Plugins *Plugins `hcl:"plugins,block"`
	// Telemetry is SPIRE's telemetry block: Prometheus only.
	Telemetry *Telemetry `hcl:"telemetry,block"`
	// HealthChecks is SPIRE's health_checks block: HTTP /live and /ready.
	HealthChecks *HealthChecks `hcl:"health_checks,block"`
	Remain       hcl.Body      `hcl:",remain"`
	// Warnings lists what the file holds that Signet accepts but ignores.
	Warnings []string
}

// Agent is the `agent` block.
type Agent struct {
	// TrustDomain is the trust domain of the server, e.g. example.org
	// (flag --trust-domain). Required.
	TrustDomain string `hcl:"trust_domain,optional"`
	// ServerAddress is the server's host or IP, without a port (SPIRE's
	// form); IPv6 literals as ::1 or [::1].
	ServerAddress string `hcl:"server_address,optional"`
	// ServerPort is the server's TCP port (default 8081).
	ServerPort int `hcl:"server_port,optional"`
	// ServerAddresses are host:port addresses of servers, tried in turn
	// (flag --server-address); instead of server_address and server_port.
	ServerAddresses []string `hcl:"server_addresses,optional"`
	// DataDir holds the agent SVID and the cached SVIDs (flag --data-dir).
	DataDir string `hcl:"data_dir,optional"`
	// SocketPath is the Workload API's Unix socket (flag --socket-path).
	SocketPath string `hcl:"socket_path,optional"`
	// JoinToken is the join token for the first attestation; prefer
	// join_token_file, which keeps it out of the file.
	JoinToken string `hcl:"join_token,optional"`
	// JoinTokenFile is a file holding the join token.
	JoinTokenFile string `hcl:"join_token_file,optional"`
	// TrustBundlePath is a PEM file with the server's trust bundle, to
	// verify the server on first contact (flag --trust-bundle).
	TrustBundlePath string `hcl:"trust_bundle_path,optional"`
	// InsecureBootstrap skips verifying the server on first contact
	// (testing only).
	InsecureBootstrap bool `hcl:"insecure_bootstrap,optional"`
	// LogLevel is debug, info, warn or error, any case (default info).
	LogLevel string `hcl:"log_level,optional"`
	// LogFormat is text or json (default text).
	LogFormat string `hcl:"log_format,optional"`
	// AllowClassicalKEX also offers classical-only TLS key exchange.
	AllowClassicalKEX bool `hcl:"allow_classical_key_exchange,optional"`
	// ProfilingAddress serves Go's net/http/pprof endpoints
	// (/debug/pprof/) on this host:port when set (flag
	// --profiling-address; SPIRE's profiling_enabled/profiling_port). Off
	// by default. Must be a loopback address unless
	// profiling_allow_remote is true: the endpoints have no
	// authentication and a heap profile shows memory contents.
	ProfilingAddress string `hcl:"profiling_address,optional"`
	// ProfilingAllowRemote lets profiling_address be a non-loopback
	// address (flag --profiling-allow-remote). Default false.
	ProfilingAllowRemote bool `hcl:"profiling_allow_remote,optional"`
	// MemoryLimit is the Go runtime's soft memory limit, e.g. "512MiB"
	// or "2GiB" (runtime/debug.SetMemoryLimit, as GOMEMLIMIT; this
	// setting wins over GOMEMLIMIT). The garbage collector works harder
	// as the heap nears it; it is not a hard cap. Default: none.
	MemoryLimit string `hcl:"memory_limit,optional"`
	// ProfilingEnabled and ProfilingPort are SPIRE's way to turn
	// profiling on: the same as profiling_address = "localhost:<port>".
	ProfilingEnabled bool `hcl:"profiling_enabled,optional"`
	// ProfilingPort is the port of SPIRE's profiling_enabled (required
	// with it).
	ProfilingPort int `hcl:"profiling_port,optional"`
	// ProfilingFreq and ProfilingNames are SPIRE's settings for writing
	// profiles to files; accepted and ignored (with a warning).
	ProfilingFreq  int      `hcl:"profiling_freq,optional"`
	ProfilingNames []string `hcl:"profiling_names,optional"`
	// SDS is SPIRE's sds block: the resource names of Envoy's Secret
	// Discovery Service on the Workload API socket (docs/sds.md).
	SDS *SDS `hcl:"sds,block"`
	// X509SVIDCacheMaxSize bounds the workload X.509-SVIDs the agent keeps
	// for workloads seen recently; SVIDs are minted only for workloads
	// that attest (SPIRE's option; default 1000).
	X509SVIDCacheMaxSize int `hcl:"x509_svid_cache_max_size,optional"`
}

// SDS is the agent's `sds` block, as SPIRE's. Names must differ from each
// other and must not be SPIFFE IDs (signet agent validate checks them).
type SDS struct {
	// DefaultSVIDName names the tls_certificate secret holding the
	// workload's first identity (default "default").
	DefaultSVIDName string `hcl:"default_svid_name,optional"`
	// DefaultBundleName names the validation context secret holding the
	// agent's own trust domain bundle (default "ROOTCA").
	DefaultBundleName string `hcl:"default_bundle_name,optional"`
	// DefaultAllBundlesName names the validation context secret holding
	// every bundle the workload may see, own and federated, in one SPIFFE
	// certificate validator config (default "ALL").
	DefaultAllBundlesName string `hcl:"default_all_bundles_name,optional"`
	// DisableSPIFFECertValidation serves bundles as plain trusted_ca
	// instead of Envoy's SPIFFE certificate validator config (default
	// false); Envoy's node metadata disable_spiffe_cert_validation
	// overrides it per proxy.
	DisableSPIFFECertValidation bool `hcl:"disable_spiffe_cert_validation,optional"`
}

// Options change how a file is read.
type Options struct {
	// ExpandEnv replaces $VAR and ${VAR} with the environment's values
	// before the file is parsed (SPIRE's -expandEnv): unset variables
	// become empty and $$ is a literal $. Without it a $ stays as written.
	ExpandEnv bool
	// Getenv looks variables up (default os.Getenv).
	Getenv func(string) string
}

// ExpandEnv replaces $VAR and ${VAR} in src as SPIRE's -expandEnv does.
func ExpandEnv(src []byte, getenv func(string) string) []byte {
	if getenv == nil {
		getenv = os.Getenv
	}
	return []byte(os.Expand(string(src), func(key string) string {
		if key == "$" {
			return "$"
		}
		return getenv(key)
	}))
}

// LoadServer reads a server configuration file.
func LoadServer(path string) (*ServerFile, error) { return LoadServerWith(path, Options{}) }

// LoadServerWith reads a server configuration file with opts.
func LoadServerWith(path string, opts Options) (*ServerFile, error) {
	var f ServerFile
	if err := load(path, opts, &f); err != nil {
		return nil, err
	}
	if f.Server == nil {
		return nil, fmt.Errorf("config: %s has no `server { ... }` block", path)
	}
	for _, d := range []struct{ name, v string }{
		{"ca_ttl", f.Server.CATTL}, {"default_x509_svid_ttl", f.Server.DefaultX509SVIDTTL},
		{"default_jwt_svid_ttl", f.Server.DefaultJWTSVIDTTL}, {"agent_ttl", f.Server.AgentTTL},
	} {
		if _, err := Duration(d.v); err != nil {
			return nil, fmt.Errorf("config: %s: %s: %w", path, d.name, err)
		}
	}
	if _, err := ParseSize(f.Server.MemoryLimit); err != nil {
		return nil, fmt.Errorf("config: %s: server: memory_limit: %w", path, err)
	}
	var err error
	if f.Server.ProfilingAddress, err = spireProfiling(f.Server.ProfilingAddress, f.Server.ProfilingEnabled, f.Server.ProfilingPort, f.Server.ProfilingFreq, f.Server.ProfilingNames, &f.Warnings); err != nil {
		return nil, fmt.Errorf("config: %s: server: %w", path, err)
	}
	if err := f.Etcd.check(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if f.Limits != nil {
		if err := f.Limits.check(); err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	if err := f.Plugins.check(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if f.Plugins != nil && len(f.Plugins.WorkloadAttestors) > 0 {
		return nil, fmt.Errorf("config: %s: WorkloadAttestor %q belongs in the agent's configuration: the server attests nodes, the agent attests workloads", path, f.Plugins.WorkloadAttestors[0].Type)
	}
	if f.Server.BindPort < 0 || f.Server.BindPort > 65535 {
		return nil, fmt.Errorf("config: %s: bind_port %d is not a TCP port", path, f.Server.BindPort)
	}
	for _, err := range []error{
		hostOnly("server: bind_address", f.Server.BindAddress, "bind_port"),
		f.Telemetry.check(), f.HealthChecks.check(), f.Server.Federation.check(f.Server.TrustDomain),
		f.OIDCDiscoveryProvider.check(),
	} {
		if err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	return &f, nil
}

// LoadAgent reads an agent configuration file.
func LoadAgent(path string) (*AgentFile, error) { return LoadAgentWith(path, Options{}) }

// LoadAgentWith reads an agent configuration file with opts.
func LoadAgentWith(path string, opts Options) (*AgentFile, error) {
	var f AgentFile
	if err := load(path, opts, &f); err != nil {
		return nil, err
	}
	if f.Agent == nil {
		return nil, fmt.Errorf("config: %s has no `agent { ... }` block", path)
	}
	if err := f.Plugins.check(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if f.Plugins != nil && len(f.Plugins.NodeAttestors) > 1 {
		return nil, fmt.Errorf("config: %s: an agent has exactly one NodeAttestor, found %d", path, len(f.Plugins.NodeAttestors))
	}
	if _, err := ParseSize(f.Agent.MemoryLimit); err != nil {
		return nil, fmt.Errorf("config: %s: agent: memory_limit: %w", path, err)
	}
	var err error
	if f.Agent.ProfilingAddress, err = spireProfiling(f.Agent.ProfilingAddress, f.Agent.ProfilingEnabled, f.Agent.ProfilingPort, f.Agent.ProfilingFreq, f.Agent.ProfilingNames, &f.Warnings); err != nil {
		return nil, fmt.Errorf("config: %s: agent: %w", path, err)
	}
	if f.Agent.ServerPort < 0 || f.Agent.ServerPort > 65535 {
		return nil, fmt.Errorf("config: %s: server_port %d is not a TCP port", path, f.Agent.ServerPort)
	}
	if f.Agent.X509SVIDCacheMaxSize < 0 {
		return nil, fmt.Errorf("config: %s: x509_svid_cache_max_size %d is negative", path, f.Agent.X509SVIDCacheMaxSize)
	}
	for _, err := range []error{
		hostOnly("agent: server_address", f.Agent.ServerAddress, "server_port"),
		f.Telemetry.check(), f.HealthChecks.check(),
	} {
		if err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	return &f, nil
}

// Parse decodes HCL source into v (a *ServerFile or *AgentFile).
func Parse(filename string, src []byte, v any) error {
	if len(src) > MaxFileSize {
		return fmt.Errorf("config: %s is larger than %d bytes (config.MaxFileSize)", filename, MaxFileSize)
	}
	if err := checkNesting(filename, src); err != nil {
		return err
	}
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return fmt.Errorf("config: %w", errors.New(withHint(diags.Error())))
	}
	if diags := gohcl.DecodeBody(file.Body, nil, v); diags.HasErrors() {
		return fmt.Errorf("config: %w", errors.New(withHint(diags.Error())))
	}
	body, _ := file.Body.(*hclsyntax.Body)
	var (
		remain   hcl.Body
		side     string
		warnings *[]string
	)
	switch f := v.(type) {
	case *ServerFile:
		remain, side, warnings = f.Remain, "server", &f.Warnings
	case *AgentFile:
		remain, side, warnings = f.Remain, "agent", &f.Warnings
	}
	if remain != nil {
		attrs, _ := remain.JustAttributes()
		for name, a := range attrs {
			return fmt.Errorf("config: %s: unknown top-level setting %q", a.Range.String(), name)
		}
	}
	if body != nil && side != "" {
		w, err := checkBlocks(side, body)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		*warnings = w
	}
	return nil
}

// withHint adds what to do to HCL's error for ${...} in a string.
func withHint(msg string) string {
	if strings.Contains(msg, "Variables not allowed") {
		msg += " (to use environment variables, run with -expandEnv; write $${ for a literal ${)"
	}
	if strings.Contains(msg, `"oidc_address" is not expected`) {
		msg += " (oidc_address became the oidc_discovery_provider { listen_address = ... } block; see docs/oidc.md)"
	}
	return msg
}

// topBlocks are the top-level blocks of each side's file.
func topBlocks(side string) []string {
	if side == "server" {
		return []string{"server", "etcd", "vault", "limits", "plugins", "telemetry", "health_checks", "oidc_discovery_provider"}
	}
	return []string{"agent", "plugins", "telemetry", "health_checks"}
}

// checkBlocks refuses unknown top-level blocks and judges the plugins
// block's kinds other than the attestors (PluginRules); it returns the
// warnings for the blocks accepted and ignored.
func checkBlocks(side string, body *hclsyntax.Body) ([]string, error) {
	var warnings []string
	for _, b := range body.Blocks {
		if !slices.Contains(topBlocks(side), b.Type) {
			return nil, fmt.Errorf("%s: unknown block %q in the %s's configuration (it takes %s)", b.DefRange().String(), b.Type, side, strings.Join(topBlocks(side), ", "))
		}
		if b.Type != "plugins" {
			continue
		}
		for _, pb := range b.Body.Blocks {
			if pb.Type == "NodeAttestor" || pb.Type == "WorkloadAttestor" {
				continue // decoded and checked by the Plugins struct
			}
			if len(pb.Labels) != 1 {
				return nil, fmt.Errorf("%s: plugins: a %s block takes one label, its type (e.g. %s \"disk\")", pb.DefRange().String(), pb.Type, pb.Type)
			}
			var p Plugin
			if diags := gohcl.DecodeBody(pb.Body, nil, &p); diags.HasErrors() {
				p.Data = nil // judged by kind and type alone
			}
			p.Type, p.kind = pb.Labels[0], pb.Type
			w, err := judge(side, pb.Type, &p, pb.DefRange())
			if err != nil {
				return nil, err
			}
			if w != "" {
				warnings = append(warnings, w)
			}
		}
	}
	return warnings, nil
}

func load(path string, opts Options, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	// Read at most one byte more than allowed: a file that grows after a
	// stat, or a FIFO, cannot make us read more.
	src, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if opts.ExpandEnv && len(src) <= MaxFileSize {
		src = ExpandEnv(src, opts.Getenv)
	}
	return Parse(path, src, v)
}

// Duration parses a duration such as "24h" or "90s"; empty means zero.
func Duration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use Go syntax such as 90s, 15m, 24h)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	return d, nil
}
