// Package azuremsi is Azure managed identity (MSI) node attestation, both
// halves, wire-compatible with SPIRE's azure_msi plugins (SPIRE v1.13.3
// has no azure_imds attestor): the agent asks the instance metadata
// service for a managed identity access token (Evidence); the server
// verifies it with Microsoft Entra ID's published keys, its tenant
// against the allow list, its audience (the tenant's resource ID) and
// lifetime, admits each identity once and names the agent
// spiffe://<td>/spire/agent/azure_msi/<tenant>/<principal> (Attestor).
// Signet never calls the Azure API: SPIRE's selectors come from it, so
// the only selectors are the ones the token's own xms_mirid claim names
// (subscription-id, vm-name) when it is a virtual machine's.
package azuremsi

import (
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// Type is the attestation type name (SPIRE's plugin name).
const Type = "azure_msi"

// DefaultResourceID is the token audience the agent asks for and a tenant
// requires by default, as SPIRE's.
const DefaultResourceID = "https://management.azure.com/"

// Limits (docs/limits.md).
const (
	// MaxPayload bounds the agent's payload, in bytes.
	MaxPayload = 32 << 10
	// MaxKeysResponse bounds the OIDC discovery and key set documents.
	MaxKeysResponse = 256 << 10
)

// AttestationData is the agent's payload, as SPIRE's.
type AttestationData struct {
	Token string `json:"token"`
}

// TokenClaims is the token's claims that attestation uses: SPIRE's tid
// and sub, and the managed identity's resource ID (xms_mirid).
type TokenClaims struct {
	jwt.Claims
	TenantID    string `json:"tid,omitempty"`
	PrincipalID string `json:"sub,omitempty"`
	ResourceID  string `json:"xms_mirid,omitempty"`
}

// algorithms are the signature algorithms SPIRE accepts.
var algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512,
}

// ParsePayload decodes the payload and parses its token (unverified).
func ParsePayload(b []byte) (*jwt.JSONWebToken, error) {
	var d AttestationData
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("failed to unmarshal data payload: %w", err)
	}
	if d.Token == "" {
		return nil, fmt.Errorf("missing token from attestation data")
	}
	tok, err := jwt.ParseSigned(d.Token, algorithms)
	if err != nil {
		return nil, fmt.Errorf("unable to parse token: %w", err)
	}
	return tok, nil
}

// DefaultAgentPathTemplate is SPIRE's default agent path.
const DefaultAgentPathTemplate = "/{{ .PluginName }}/{{ .TenantID }}/{{ .PrincipalID }}"

// TemplateData is what an agent_path_template sees: SPIRE's fields (the
// token's claims and PluginName).
type TemplateData struct {
	TokenClaims
	PluginName string
}

var reVirtualMachineID = regexp.MustCompile(`(?i)^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Compute/virtualMachines/([^/]+)$`)
var reSubscription = regexp.MustCompile(`(?i)^/subscriptions/([^/]+)/`)

// Selectors returns the selectors the signed xms_mirid claim supports, in
// SPIRE's formats and order (sorted): subscription-id:<id> for any
// resource ID, vm-name:<resource group>:<name> for a virtual machine's
// system-assigned identity. SPIRE finds these through the Azure API.
func Selectors(c *TokenClaims) []*types.Selector {
	var out []*types.Selector
	if m := reSubscription.FindStringSubmatch(c.ResourceID); m != nil {
		out = append(out, &types.Selector{Type: Type, Value: "subscription-id:" + m[1]})
	}
	if m := reVirtualMachineID.FindStringSubmatch(c.ResourceID); m != nil {
		out = append(out, &types.Selector{Type: Type, Value: "vm-name:" + m[2] + ":" + m[3]})
	}
	return out
}
