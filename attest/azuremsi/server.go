package azuremsi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/agentpath"
	"github.com/signet-id/signet/attest/metadata"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tokenLeeway is the clock skew allowed on the token's times, as SPIRE's.
const tokenLeeway = 5 * time.Minute

// ServerPluginData is the server's plugin_data, with SPIRE's names:
// tenants maps each allowed tenant ID to its settings, of which Signet
// takes resource_id; subscription_id, app_id and app_secret authenticate
// SPIRE to the Azure API, which Signet does not call, and are refused.
type ServerPluginData struct {
	Tenants           map[string]map[string]string `hcl:"tenants,optional"`
	AgentPathTemplate string                       `hcl:"agent_path_template,optional"`

	// Signet's: the OIDC issuer whose discovery document names the token
	// signing keys; default SPIRE's (Microsoft Entra ID's common one).
	OIDCIssuer string `hcl:"oidc_issuer,optional"`
}

// Config configures the server half.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// Tenants maps each allowed tenant ID to the resource ID (audience)
	// its tokens must be for; empty: DefaultResourceID.
	Tenants map[string]string
	// AgentPathTemplate is SPIRE's agent_path_template; empty: the
	// default.
	AgentPathTemplate string
	// OIDCIssuer; empty: DefaultOIDCIssuer.
	OIDCIssuer string
	// Client fetches the keys; nil: the default.
	Client *metadata.Client
	// Now is the time tokens are checked at; nil: time.Now.
	Now func() time.Time
}

// ConfigFromPluginData checks d as SPIRE does.
func ConfigFromPluginData(td spiffeid.TrustDomain, d ServerPluginData) (Config, error) {
	cfg := Config{TrustDomain: td, Tenants: map[string]string{}, AgentPathTemplate: d.AgentPathTemplate, OIDCIssuer: d.OIDCIssuer}
	for tenant, settings := range d.Tenants {
		for k, v := range settings {
			switch k {
			case "resource_id":
				cfg.Tenants[tenant] = v
			case "subscription_id", "app_id", "app_secret":
				return Config{}, fmt.Errorf("azuremsi: tenant %q: %s is not supported: Signet does not call the Azure API", tenant, k)
			default:
				return Config{}, fmt.Errorf("azuremsi: tenant %q: unknown setting %q", tenant, k)
			}
		}
		if _, ok := cfg.Tenants[tenant]; !ok {
			cfg.Tenants[tenant] = ""
		}
	}
	return cfg, nil
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
		return nil, errors.New("azuremsi: trust domain is required")
	}
	if len(cfg.Tenants) == 0 {
		return nil, errors.New("azuremsi: configuration must have at least one tenant")
	}
	tenants := make(map[string]string, len(cfg.Tenants))
	for t, r := range cfg.Tenants {
		if r == "" {
			r = DefaultResourceID
		}
		tenants[t] = r
	}
	cfg.Tenants = tenants
	tmpl, err := agentpath.Parse(cfg.AgentPathTemplate, DefaultAgentPathTemplate)
	if err != nil {
		return nil, fmt.Errorf("azuremsi: %w", err)
	}
	if cfg.OIDCIssuer, err = metadata.Endpoint("oidc_issuer", cfg.OIDCIssuer, DefaultOIDCIssuer); err != nil {
		return nil, fmt.Errorf("azuremsi: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Attestor{cfg: cfg, tmpl: tmpl, keys: &keySet{issuer: cfg.OIDCIssuer, client: cfg.Client, now: cfg.Now}}, nil
}

// Type returns "azure_msi".
func (a *Attestor) Type() string { return Type }

// CheckPayload refuses a payload over MaxPayload before anything else.
func (a *Attestor) CheckPayload(payload []byte) error {
	if len(payload) > MaxPayload {
		return attest.CheckPayload("azuremsi", payload, MaxPayload)
	}
	return nil
}

// Attest verifies the token (signature by a key of the issuer, tenant
// allowed, audience the tenant's resource ID, times within SPIRE's
// leeway), that the identity has not attested before, and returns SPIRE's
// agent ID. An azure_msi agent may not attest again (CanReattest false),
// as in SPIRE.
func (a *Attestor) Attest(ctx context.Context, req attest.NodeRequest) (attest.NodeResult, error) {
	if err := attest.CheckPayload("azuremsi", req.Payload, MaxPayload); err != nil {
		return attest.NodeResult{}, err
	}
	tok, err := ParsePayload(req.Payload)
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.InvalidArgument, "azuremsi: %v", err)
	}
	kid := ""
	for _, h := range tok.Headers {
		if h.KeyID != "" {
			kid = h.KeyID
			break
		}
	}
	if kid == "" {
		return attest.NodeResult{}, status.Error(codes.InvalidArgument, "token missing key id")
	}
	set, err := a.keys.get(ctx)
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.Unavailable, "unable to obtain JWKS: %v", err)
	}
	keys := set.Key(kid)
	if len(keys) == 0 {
		return attest.NodeResult{}, status.Errorf(codes.PermissionDenied, "key id %q not found", kid)
	}
	claims := new(TokenClaims)
	if err := tok.Claims(&keys[0], claims); err != nil {
		return attest.NodeResult{}, status.Errorf(codes.PermissionDenied, "unable to verify token: %v", err)
	}
	switch {
	case claims.TenantID == "":
		return attest.NodeResult{}, status.Error(codes.PermissionDenied, "token missing tenant ID claim")
	case claims.PrincipalID == "":
		return attest.NodeResult{}, status.Error(codes.PermissionDenied, "token missing subject claim")
	}
	resource, ok := a.cfg.Tenants[claims.TenantID]
	if !ok {
		return attest.NodeResult{}, status.Errorf(codes.PermissionDenied, "tenant %q is not authorized", claims.TenantID)
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{AnyAudience: []string{resource}, Time: a.cfg.Now()}, tokenLeeway); err != nil {
		return attest.NodeResult{}, status.Errorf(codes.PermissionDenied, "unable to validate token claims: %v", err)
	}
	id, err := a.tmpl.AgentID(a.cfg.TrustDomain, TemplateData{TokenClaims: *claims, PluginName: Type})
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.Internal, "unable to make agent ID: %v", err)
	}
	if err := attest.AssessTOFU(ctx, req, id); err != nil {
		return attest.NodeResult{}, err
	}
	return attest.NodeResult{AgentID: id, Selectors: Selectors(claims)}, nil
}
