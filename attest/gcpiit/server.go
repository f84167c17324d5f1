package gcpiit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/agentpath"
	"github.com/signet-id/signet/attest/metadata"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ServerPluginData is the server's plugin_data, with SPIRE's names.
// use_instance_metadata needs the Compute API, which Signet does not call:
// it is refused; the settings that only matter with it
// (allowed_label_keys, allowed_metadata_keys, max_metadata_value_size,
// service_account_file) are accepted and change nothing, as in SPIRE
// without it.
type ServerPluginData struct {
	ProjectIDAllowList   []string `hcl:"projectid_allow_list,optional"`
	AgentPathTemplate    string   `hcl:"agent_path_template,optional"`
	UseInstanceMetadata  bool     `hcl:"use_instance_metadata,optional"`
	AllowedLabelKeys     []string `hcl:"allowed_label_keys,optional"`
	AllowedMetadataKeys  []string `hcl:"allowed_metadata_keys,optional"`
	MaxMetadataValueSize int      `hcl:"max_metadata_value_size,optional"`
	ServiceAccountFile   string   `hcl:"service_account_file,optional"`

	// Signet's: where Google's token signing certificates are fetched
	// (a JSON object of key ID → PEM certificate); default SPIRE's URL.
	CertsURL string `hcl:"google_certs_url,optional"`
}

// Config configures the server half.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// ProjectIDs are the allowed projects; at least one, as SPIRE.
	ProjectIDs []string
	// AgentPathTemplate is SPIRE's agent_path_template; empty: the
	// default.
	AgentPathTemplate string
	// CertsURL is Google's certificate document; empty: DefaultCertsURL.
	CertsURL string
	// Client fetches it; nil: the default.
	Client *metadata.Client
	// Now is the time tokens are checked at; nil: time.Now.
	Now func() time.Time
}

// ConfigFromPluginData checks d as SPIRE does.
func ConfigFromPluginData(td spiffeid.TrustDomain, d ServerPluginData) (Config, error) {
	if d.UseInstanceMetadata {
		return Config{}, errors.New("gcpiit: use_instance_metadata is not supported: Signet does not call the Compute API")
	}
	return Config{TrustDomain: td, ProjectIDs: d.ProjectIDAllowList, AgentPathTemplate: d.AgentPathTemplate, CertsURL: d.CertsURL}, nil
}

// Attestor is the server half. Its errors are gRPC statuses.
type Attestor struct {
	cfg  Config
	tmpl *agentpath.Template
	keys *keySet
}

// NewAttestor returns the server half.
func NewAttestor(cfg Config) (*Attestor, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("gcpiit: trust domain is required")
	}
	if len(cfg.ProjectIDs) == 0 {
		return nil, errors.New("gcpiit: projectid_allow_list is required")
	}
	tmpl, err := agentpath.Parse(cfg.AgentPathTemplate, DefaultAgentPathTemplate)
	if err != nil {
		return nil, fmt.Errorf("gcpiit: %w", err)
	}
	if cfg.CertsURL, err = metadata.Endpoint("google_certs_url", cfg.CertsURL, DefaultCertsURL); err != nil {
		return nil, fmt.Errorf("gcpiit: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Attestor{cfg: cfg, tmpl: tmpl, keys: &keySet{url: cfg.CertsURL, client: cfg.Client, now: cfg.Now}}, nil
}

// Type returns "gcp_iit".
func (a *Attestor) Type() string { return Type }

// CheckPayload refuses a payload over MaxPayload before anything else.
func (a *Attestor) CheckPayload(payload []byte) error {
	if len(payload) > MaxPayload {
		return attest.CheckPayload("gcpiit", payload, MaxPayload)
	}
	return nil
}

// Attest verifies the token (signature by a Google key, SPIRE's audience,
// not expired), the project, that the instance has not attested before,
// and returns SPIRE's agent ID and selectors. A gcp_iit agent may not
// attest again (CanReattest false), as in SPIRE.
func (a *Attestor) Attest(ctx context.Context, req attest.NodeRequest) (attest.NodeResult, error) {
	if err := attest.CheckPayload("gcpiit", req.Payload, MaxPayload); err != nil {
		return attest.NodeResult{}, err
	}
	tok, err := ParseToken(req.Payload)
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.InvalidArgument, "gcpiit: %v", err)
	}
	keys, err := a.keys.get(ctx)
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.Unavailable, "gcpiit: unable to fetch Google's certificates: %v", err)
	}
	var claims IdentityToken
	if err := tok.Claims(keys, &claims); err != nil {
		return attest.NodeResult{}, status.Errorf(codes.PermissionDenied, "failed to validate the identity token signature: %v", err)
	}
	if err := claims.Validate(jwt.Expected{AnyAudience: []string{Audience}, Time: a.cfg.Now()}); err != nil {
		return attest.NodeResult{}, status.Errorf(codes.PermissionDenied, "failed to validate the identity token claims: %v", err)
	}
	ce := claims.Google.ComputeEngine
	if ce.ProjectID == "" || ce.InstanceID == "" {
		return attest.NodeResult{}, status.Error(codes.PermissionDenied, "gcpiit: the identity token has no compute_engine project_id or instance_id (not format=full)")
	}
	if !slices.Contains(a.cfg.ProjectIDs, ce.ProjectID) {
		return attest.NodeResult{}, status.Errorf(codes.PermissionDenied, "identity token project ID %q is not in the allow list", ce.ProjectID)
	}
	id, err := a.tmpl.AgentID(a.cfg.TrustDomain, TemplateData{ComputeEngine: ce, PluginName: Type})
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.Internal, "failed to create agent ID: %v", err)
	}
	if err := attest.AssessTOFU(ctx, req, id); err != nil {
		return attest.NodeResult{}, err
	}
	return attest.NodeResult{AgentID: id, Selectors: Selectors(ce)}, nil
}
