package k8spsat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// DefaultTokenPath is SPIRE's default token path (a projected volume).
const DefaultTokenPath = "/var/run/secrets/tokens/spire-agent"

// AgentConfig configures the agent half. The tagged fields are SPIRE's
// plugin_data for the agent k8s_psat plugin.
type AgentConfig struct {
	// Cluster is the name the server's clusters map knows this cluster by
	// (required).
	Cluster string `hcl:"cluster"`
	// TokenPath is the projected token file; default DefaultTokenPath.
	TokenPath string `hcl:"token_path,optional"`
}

// Evidence is the agent half: it sends the token file's content, read
// afresh at each attestation (the kubelet rotates it), with the cluster
// name.
type Evidence struct {
	cluster   string
	tokenPath string
}

// NewEvidence checks the configuration; the token is read when attesting.
func NewEvidence(cfg AgentConfig) (*Evidence, error) {
	if cfg.Cluster == "" {
		return nil, errors.New("k8spsat: missing required cluster block")
	}
	if cfg.TokenPath == "" {
		cfg.TokenPath = DefaultTokenPath
	}
	return &Evidence{cluster: cfg.Cluster, tokenPath: cfg.TokenPath}, nil
}

// Type returns "k8s_psat".
func (e *Evidence) Type() string { return Type }

// Payload returns {"cluster": ..., "token": ...} with the token file's
// content as it is (SPIRE does not trim it either).
func (e *Evidence) Payload(context.Context) ([]byte, error) {
	token, err := os.ReadFile(e.tokenPath)
	if err != nil {
		return nil, fmt.Errorf("k8spsat: unable to load token from %s: %w", e.tokenPath, err)
	}
	if len(token) == 0 {
		return nil, fmt.Errorf("k8spsat: unable to load token from %s: the file is empty", e.tokenPath)
	}
	b, err := json.Marshal(attestationData{Cluster: e.cluster, Token: string(token)})
	if err != nil {
		return nil, fmt.Errorf("k8spsat: marshal attestation data: %w", err)
	}
	return b, nil
}

// Respond refuses: k8s_psat has no challenge.
func (e *Evidence) Respond(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("k8spsat: the server sent a challenge, but k8s_psat has none")
}
