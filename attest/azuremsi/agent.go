package azuremsi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/signet-id/signet/attest/metadata"
)

// DefaultEndpoint is the instance metadata service, as SPIRE's (fixed
// there).
const DefaultEndpoint = "http://169.254.169.254"

// AgentPluginData is the agent's plugin_data, with SPIRE's names, and
// Signet's metadata_endpoint.
type AgentPluginData struct {
	ResourceID string `hcl:"resource_id,optional"`
	// MetadataEndpoint is Signet's: where the metadata service is;
	// default DefaultEndpoint.
	MetadataEndpoint string `hcl:"metadata_endpoint,optional"`
}

// Evidence is the agent half: it asks the metadata service for a managed
// identity token for every attestation.
type Evidence struct {
	url    string
	client *metadata.Client
}

// NewEvidence returns the agent half for d; client nil: the default.
func NewEvidence(d AgentPluginData, client *metadata.Client) (*Evidence, error) {
	ep, err := metadata.Endpoint("metadata_endpoint", d.MetadataEndpoint, DefaultEndpoint)
	if err != nil {
		return nil, fmt.Errorf("azuremsi: %w", err)
	}
	res := d.ResourceID
	if res == "" {
		res = DefaultResourceID
	}
	q := url.Values{}
	q.Set("api-version", "2018-02-01")
	q.Set("resource", res)
	return &Evidence{url: ep + "/metadata/identity/oauth2/token?" + q.Encode(), client: client}, nil
}

// Type returns "azure_msi".
func (e *Evidence) Type() string { return Type }

// Payload returns SPIRE's payload: {"token": <access token>}.
func (e *Evidence) Payload(ctx context.Context) ([]byte, error) {
	b, err := e.client.Do(ctx, http.MethodGet, e.url, map[string]string{"Metadata": "true"}, MaxPayload)
	if err != nil {
		return nil, fmt.Errorf("azuremsi: unable to fetch token: %w", err)
	}
	var r struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("azuremsi: unable to fetch token: unable to decode response: %w", err)
	}
	if r.AccessToken == "" {
		return nil, errors.New("azuremsi: unable to fetch token: response missing access token")
	}
	payload, err := json.Marshal(AttestationData{Token: r.AccessToken})
	if err != nil {
		return nil, fmt.Errorf("azuremsi: failed to marshal payload: %w", err)
	}
	return payload, nil
}

// Respond refuses: azure_msi has no challenge.
func (e *Evidence) Respond(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("azuremsi: unexpected challenge")
}
