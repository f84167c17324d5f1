package gcpiit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/signet-id/signet/attest/metadata"
)

// Defaults of the agent half, as SPIRE's.
const (
	DefaultIdentityTokenHost = "metadata.google.internal"
	DefaultServiceAccount    = "default"
)

// AgentPluginData is the agent's plugin_data, with SPIRE's names.
type AgentPluginData struct {
	IdentityTokenHost string `hcl:"identity_token_host,optional"`
	ServiceAccount    string `hcl:"service_account,optional"`
}

// Evidence is the agent half: it asks the metadata server for a fresh
// identity token for every attestation.
type Evidence struct {
	url    string
	client *metadata.Client
}

// NewEvidence returns the agent half for d; client nil: the default.
func NewEvidence(d AgentPluginData, client *metadata.Client) (*Evidence, error) {
	host, sa := d.IdentityTokenHost, d.ServiceAccount
	if host == "" {
		host = DefaultIdentityTokenHost
	}
	if sa == "" {
		sa = DefaultServiceAccount
	}
	if strings.ContainsAny(host, "/?#@") {
		return nil, fmt.Errorf("gcpiit: identity_token_host %q is not a host[:port]", host)
	}
	q := url.Values{}
	q.Set("audience", Audience)
	q.Set("format", "full")
	u := url.URL{Scheme: "http", Host: host, Path: "/computeMetadata/v1/instance/service-accounts/" + sa + "/identity", RawQuery: q.Encode()}
	return &Evidence{url: u.String(), client: client}, nil
}

// Type returns "gcp_iit".
func (e *Evidence) Type() string { return Type }

// Payload returns the identity token, as SPIRE's agent sends it (the
// compact JWS, no JSON around it).
func (e *Evidence) Payload(ctx context.Context) ([]byte, error) {
	tok, err := e.client.Do(ctx, http.MethodGet, e.url, map[string]string{"Metadata-Flavor": "Google"}, MaxPayload)
	if err != nil {
		return nil, fmt.Errorf("gcpiit: unable to retrieve valid identity token: %w", err)
	}
	return tok, nil
}

// Respond refuses: gcp_iit has no challenge.
func (e *Evidence) Respond(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("gcpiit: unexpected challenge")
}
