// Package gcpiit is GCP instance identity token node attestation, both
// halves, wire-compatible with SPIRE's gcp_iit plugins: the agent asks the
// metadata server for a full-format identity token with SPIRE's audience
// (Evidence); the server verifies the RS256 JWT with Google's certificates,
// its audience and lifetime, the project allow list, admits each instance
// once and names the agent
// spiffe://<td>/spire/agent/gcp_iit/<project>/<instance id> (Attestor).
// Signet never calls the Compute API, so the selectors are the token's own
// (project-id, zone, instance-name).
package gcpiit

import (
	"fmt"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// Type is the attestation type name (SPIRE's plugin name).
const Type = "gcp_iit"

// Audience is the audience the agent asks for and the server requires, as
// SPIRE's.
const Audience = "spire-gcp-node-attestor"

// Limits (docs/limits.md).
const (
	// MaxPayload bounds the agent's payload (the token), in bytes.
	MaxPayload = 16 << 10
	// MaxCertsResponse bounds Google's certificate document, in bytes.
	MaxCertsResponse = 256 << 10
)

// IdentityToken is the token's claims, as SPIRE reads them.
type IdentityToken struct {
	jwt.Claims
	AuthorizedParty string `json:"azp,omitempty"`
	Google          Google `json:"google"`
}

// Google is the token's "google" claim.
type Google struct {
	ComputeEngine ComputeEngine `json:"compute_engine"`
}

// ComputeEngine is the instance the token describes (format=full).
type ComputeEngine struct {
	ProjectID                 string `json:"project_id"`
	ProjectNumber             int64  `json:"project_number"`
	Zone                      string `json:"zone"`
	InstanceID                string `json:"instance_id"`
	InstanceName              string `json:"instance_name"`
	InstanceCreationTimestamp int64  `json:"instance_creation_timestamp"`
}

var algorithms = []jose.SignatureAlgorithm{jose.RS256}

// ParseToken parses the payload as a compact JWS signed with RS256, as
// SPIRE accepts; it does not verify it.
func ParseToken(payload []byte) (*jwt.JSONWebToken, error) {
	tok, err := jwt.ParseSigned(string(payload), algorithms)
	if err != nil {
		return nil, fmt.Errorf("unable to parse the identity token: %w", err)
	}
	return tok, nil
}

// DefaultAgentPathTemplate is SPIRE's default agent path.
const DefaultAgentPathTemplate = "/{{ .PluginName }}/{{ .ProjectID }}/{{ .InstanceID }}"

// TemplateData is what an agent_path_template sees: SPIRE's fields (the
// ComputeEngine ones and PluginName).
type TemplateData struct {
	ComputeEngine
	PluginName string
}

// Selectors returns SPIRE's token selectors, in SPIRE's order.
func Selectors(ce ComputeEngine) []*types.Selector {
	return []*types.Selector{
		{Type: Type, Value: "project-id:" + ce.ProjectID},
		{Type: Type, Value: "zone:" + ce.Zone},
		{Type: Type, Value: "instance-name:" + ce.InstanceName},
	}
}
