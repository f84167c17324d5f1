// Package awsiid is AWS EC2 instance identity document node attestation,
// both halves, wire-compatible with SPIRE's aws_iid plugins: the agent
// reads the signed instance identity document from the instance metadata
// service (IMDSv2) (Evidence); the server verifies AWS's signature with
// the region's certificate, admits allowed accounts once per instance and
// names the agent spiffe://<td>/spire/agent/aws_iid/<account>/<region>/<instance>
// (Attestor). Signet never calls the AWS API, so the selectors are the
// document's own (az, image:id, instance:id, region).
package awsiid

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// Type is the attestation type name (SPIRE's plugin name).
const Type = "aws_iid"

// Limits (docs/limits.md).
const (
	// MaxPayload bounds the agent's payload, in bytes (a real one is
	// about 3 KiB).
	MaxPayload = 32 << 10
	// MaxMetadataResponse bounds what the agent reads from the metadata
	// service per request, in bytes.
	MaxMetadataResponse = 16 << 10
)

// AttestationData is the agent's payload, as SPIRE's: the document and
// its two signatures (RSA-1024 PKCS #1 v1.5 and RSA-2048 PKCS #7), both
// base64 as the metadata service serves them.
type AttestationData struct {
	Document         string `json:"document"`
	Signature        string `json:"signature"`
	SignatureRSA2048 string `json:"rsa2048"`
}

// Document is the fields of an instance identity document that
// attestation uses (the document has more; they are kept in the signed
// bytes, not here).
type Document struct {
	AccountID        string `json:"accountId"`
	Architecture     string `json:"architecture,omitempty"`
	AvailabilityZone string `json:"availabilityZone"`
	ImageID          string `json:"imageId"`
	InstanceID       string `json:"instanceId"`
	InstanceType     string `json:"instanceType,omitempty"`
	PendingTime      string `json:"pendingTime,omitempty"`
	PrivateIP        string `json:"privateIp,omitempty"`
	Region           string `json:"region"`
	Version          string `json:"version,omitempty"`
}

// ParsePayload decodes the agent's payload and the document inside it. It
// checks shape only, not the signature.
func ParsePayload(b []byte) (*AttestationData, *Document, error) {
	var data AttestationData
	if err := json.Unmarshal(b, &data); err != nil {
		return nil, nil, fmt.Errorf("failed to unmarshal the attestation data: %w", err)
	}
	var doc Document
	if err := json.Unmarshal([]byte(data.Document), &doc); err != nil {
		return nil, nil, fmt.Errorf("failed to unmarshal the IID: %w", err)
	}
	switch {
	case doc.AccountID == "":
		return nil, nil, errors.New("the IID has no accountId")
	case doc.Region == "":
		return nil, nil, errors.New("the IID has no region")
	case doc.InstanceID == "":
		return nil, nil, errors.New("the IID has no instanceId")
	}
	return &data, &doc, nil
}

// DefaultAgentPathTemplate is SPIRE's default agent path.
const DefaultAgentPathTemplate = "/{{ .PluginName}}/{{ .AccountID }}/{{ .Region }}/{{ .InstanceID }}"

// TemplateData is what an agent_path_template sees: SPIRE's fields. Tags
// needs the AWS API and is refused at configuration.
type TemplateData struct {
	InstanceID  string
	AccountID   string
	Region      string
	PluginName  string
	TrustDomain string
}

// Selectors returns SPIRE's document selectors, sorted as SPIRE sorts
// them: az, image:id, instance:id, region.
func Selectors(doc *Document) []*types.Selector {
	vals := []string{
		"az:" + doc.AvailabilityZone,
		"image:id:" + doc.ImageID,
		"instance:id:" + doc.InstanceID,
		"region:" + doc.Region,
	}
	sort.Strings(vals)
	out := make([]*types.Selector, len(vals))
	for i, v := range vals {
		out[i] = &types.Selector{Type: Type, Value: v}
	}
	return out
}
