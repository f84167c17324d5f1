package awsiid

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/signet-id/signet/attest/metadata"
)

// DefaultEndpoint is the instance metadata service, as the AWS SDK's
// default.
const DefaultEndpoint = "http://169.254.169.254"

// tokenTTL is the IMDSv2 session token lifetime asked for, as the AWS
// SDK's default (seconds).
const tokenTTL = "21600"

// AgentPluginData is the agent's plugin_data, with SPIRE's names.
type AgentPluginData struct {
	EC2MetadataEndpoint string `hcl:"ec2_metadata_endpoint,optional"`
}

// Evidence is the agent half: it reads the document and both signatures
// from the metadata service for every attestation.
type Evidence struct {
	endpoint string
	client   *metadata.Client
}

// NewEvidence returns the agent half for d; client nil: the default.
func NewEvidence(d AgentPluginData, client *metadata.Client) (*Evidence, error) {
	ep, err := metadata.Endpoint("ec2_metadata_endpoint", d.EC2MetadataEndpoint, DefaultEndpoint)
	if err != nil {
		return nil, fmt.Errorf("awsiid: %w", err)
	}
	return &Evidence{endpoint: ep, client: client}, nil
}

// Type returns "aws_iid".
func (e *Evidence) Type() string { return Type }

// Payload fetches an IMDSv2 session token (falling back to IMDSv1 where
// the service has no token endpoint, as the AWS SDK does), then the
// document, its RSA-1024 signature and its RSA-2048 PKCS #7 signature, and
// returns SPIRE's payload.
func (e *Evidence) Payload(ctx context.Context) ([]byte, error) {
	headers := map[string]string{}
	tok, err := e.client.Do(ctx, http.MethodPut, e.endpoint+"/latest/api/token",
		map[string]string{"X-Aws-Ec2-Metadata-Token-Ttl-Seconds": tokenTTL}, MaxMetadataResponse)
	var se *metadata.StatusError
	switch {
	case err == nil:
		headers["X-Aws-Ec2-Metadata-Token"] = string(tok)
	case errors.As(err, &se) && (se.Code == http.StatusNotFound || se.Code == http.StatusMethodNotAllowed):
		// No IMDSv2 here: IMDSv1 requests carry no token.
	default:
		return nil, fmt.Errorf("awsiid: IMDSv2 token: %w", err)
	}
	var parts [3]string
	for i, p := range []string{"document", "signature", "rsa2048"} {
		b, err := e.client.Do(ctx, http.MethodGet, e.endpoint+"/latest/dynamic/instance-identity/"+p, headers, MaxMetadataResponse)
		if err != nil {
			return nil, fmt.Errorf("awsiid: %w", err)
		}
		parts[i] = string(b)
	}
	payload, err := json.Marshal(AttestationData{Document: parts[0], Signature: parts[1], SignatureRSA2048: parts[2]})
	if err != nil {
		return nil, fmt.Errorf("awsiid: unable to marshal attestation data: %w", err)
	}
	return payload, nil
}

// Respond refuses: aws_iid has no challenge.
func (e *Evidence) Respond(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("awsiid: unexpected challenge")
}
