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
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// MaxFileSize bounds configuration files (1 MiB); see also MaxNesting.
const MaxFileSize = 1 << 20

// ServerFile is a server configuration file.
type ServerFile struct {
	Server *Server `hcl:"server,block"`
	Etcd   *Etcd   `hcl:"etcd,block"`
	Vault  *Vault  `hcl:"vault,block"`
	Limits *Limits `hcl:"limits,block"`
	// Plugins holds SPIRE-style NodeAttestor blocks.
	Plugins *Plugins `hcl:"plugins,block"`
	Remain  hcl.Body `hcl:",remain"`
}

// Server is the `server` block.
type Server struct {
	TrustDomain        string   `hcl:"trust_domain,optional"`
	BindAddress        string   `hcl:"bind_address,optional"`
	BindPort           int      `hcl:"bind_port,optional"`
	DataDir            string   `hcl:"data_dir,optional"`
	SocketPath         string   `hcl:"socket_path,optional"`
	CATTL              string   `hcl:"ca_ttl,optional"`
	DefaultX509SVIDTTL string   `hcl:"default_x509_svid_ttl,optional"`
	DefaultJWTSVIDTTL  string   `hcl:"default_jwt_svid_ttl,optional"`
	AgentTTL           string   `hcl:"agent_ttl,optional"`
	LogLevel           string   `hcl:"log_level,optional"`
	LogFormat          string   `hcl:"log_format,optional"`
	AllowClassicalKEX  bool     `hcl:"allow_classical_key_exchange,optional"`
	AdminIDs           []string `hcl:"admin_ids,optional"`
	CredentialProfile  string   `hcl:"credential_profile,optional"`
	CAKEKPath          string   `hcl:"ca_kek_path,optional"`
	OIDCAddress        string   `hcl:"oidc_address,optional"`
}

// Etcd is the `etcd` block: an external cluster instead of the embedded one.
type Etcd struct {
	Endpoints []string `hcl:"endpoints"`
	CertFile  string   `hcl:"cert_file,optional"`
	KeyFile   string   `hcl:"key_file,optional"`
	CAFile    string   `hcl:"ca_file,optional"`
	// Insecure accepts plaintext endpoints or no client certificate.
	Insecure bool `hcl:"insecure,optional"`
}

// Vault is the `vault` block: the Vault the server brokers secrets from.
// Credentials are read from files, never written in the configuration.
type Vault struct {
	Address      string `hcl:"address"`
	Namespace    string `hcl:"namespace,optional"`
	CAFile       string `hcl:"ca_file,optional"`
	Auth         string `hcl:"auth"`
	TokenFile    string `hcl:"token_file,optional"`
	RoleID       string `hcl:"role_id,optional"`
	SecretIDFile string `hcl:"secret_id_file,optional"`
	JWTRole      string `hcl:"jwt_role,optional"`
	JWTMount     string `hcl:"jwt_mount,optional"`
	// UpstreamPKIMount makes Vault PKI at this mount sign the CA.
	UpstreamPKIMount string `hcl:"upstream_pki_mount,optional"`
}

// AgentFile is an agent configuration file.
type AgentFile struct {
	Agent *Agent `hcl:"agent,block"`
	// Plugins holds the SPIRE-style NodeAttestor block (at most one) and
	// WorkloadAttestor blocks.
	Plugins *Plugins `hcl:"plugins,block"`
	Remain  hcl.Body `hcl:",remain"`
}

// Agent is the `agent` block.
type Agent struct {
	TrustDomain       string   `hcl:"trust_domain,optional"`
	ServerAddress     string   `hcl:"server_address,optional"`
	ServerPort        int      `hcl:"server_port,optional"`
	ServerAddresses   []string `hcl:"server_addresses,optional"`
	DataDir           string   `hcl:"data_dir,optional"`
	SocketPath        string   `hcl:"socket_path,optional"`
	JoinToken         string   `hcl:"join_token,optional"`
	JoinTokenFile     string   `hcl:"join_token_file,optional"`
	TrustBundlePath   string   `hcl:"trust_bundle_path,optional"`
	InsecureBootstrap bool     `hcl:"insecure_bootstrap,optional"`
	LogLevel          string   `hcl:"log_level,optional"`
	LogFormat         string   `hcl:"log_format,optional"`
	AllowClassicalKEX bool     `hcl:"allow_classical_key_exchange,optional"`
}

// LoadServer reads a server configuration file.
func LoadServer(path string) (*ServerFile, error) {
	var f ServerFile
	if err := load(path, &f); err != nil {
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
	return &f, nil
}

// LoadAgent reads an agent configuration file.
func LoadAgent(path string) (*AgentFile, error) {
	var f AgentFile
	if err := load(path, &f); err != nil {
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
	if f.Agent.ServerPort < 0 || f.Agent.ServerPort > 65535 {
		return nil, fmt.Errorf("config: %s: server_port %d is not a TCP port", path, f.Agent.ServerPort)
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
		return fmt.Errorf("config: %w", errors.New(diags.Error()))
	}
	if diags := gohcl.DecodeBody(file.Body, nil, v); diags.HasErrors() {
		return fmt.Errorf("config: %w", errors.New(diags.Error()))
	}
	var remain hcl.Body
	switch f := v.(type) {
	case *ServerFile:
		remain = f.Remain
	case *AgentFile:
		remain = f.Remain
	}
	if remain != nil {
		attrs, _ := remain.JustAttributes()
		for name, a := range attrs {
			return fmt.Errorf("config: %s: unknown top-level setting %q", a.Range.String(), name)
		}
	}
	return nil
}

func load(path string, v any) error {
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
