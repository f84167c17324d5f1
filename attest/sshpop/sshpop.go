// Package sshpop is SSH host certificate node attestation, both halves,
// wire-compatible with SPIRE's sshpop plugins: the agent presents its
// host certificate (Evidence), the server checks it against the
// configured host CAs and has the agent sign a fresh nonce with the host
// key (Attestor), and names it spiffe://<td>/spire/agent/sshpop/<fingerprint>
// or by agent_path_template.
package sshpop

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/signet-id/signet/attest/agentpath"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/ssh"
)

// Type is the attestation type name (SPIRE's plugin name).
const Type = "sshpop"

// Limits (docs/limits.md).
const (
	// NonceSize is the length of the server's and the agent's nonce.
	NonceSize = 32
	// MaxPayload bounds the agent's payload and its challenge response,
	// in bytes (a host certificate with a 16384-bit RSA key is under 8 KiB
	// in this encoding).
	MaxPayload = 64 << 10
)

// DefaultAgentPathTemplate is SPIRE's default agent path.
const DefaultAgentPathTemplate = "/{{ .PluginName}}/{{ .Fingerprint }}"

// The wire format, as SPIRE's sshpop handshake sends it: JSON objects
// whose []byte fields are standard base64.
type (
	// attestationData is the payload: the host certificate in SSH wire
	// format.
	attestationData struct {
		Certificate []byte `json:"Certificate"`
	}
	// challengeRequest is the server's challenge.
	challengeRequest struct {
		Nonce []byte `json:"Nonce"`
	}
	// challengeResponse is the agent's answer: its own nonce and its host
	// key's signature over sha256(server nonce || agent nonce).
	challengeResponse struct {
		Nonce     []byte         `json:"Nonce"`
		Signature *ssh.Signature `json:"Signature"`
	}
)

// signedData is what the agent signs: sha256 of the server's nonce then
// the agent's, both NonceSize bytes.
func signedData(server, agent []byte) ([]byte, error) {
	if len(server) != NonceSize {
		return nil, errors.New("sshpop: invalid challenge nonce size")
	}
	if len(agent) != NonceSize {
		return nil, errors.New("sshpop: invalid response nonce size")
	}
	h := sha256.New()
	_, _ = h.Write(server)
	_, _ = h.Write(agent)
	return h.Sum(nil), nil
}

// Fingerprint is the certificate's fingerprint in agent IDs: sha256 of
// the whole certificate in SSH wire format (not only its key), unpadded
// URL-safe base64.
func Fingerprint(cert *ssh.Certificate) string {
	sum := sha256.Sum256(cert.Marshal())
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// templateData is what an agent path template sees, as in SPIRE: the
// certificate's fields (.KeyId, .Serial, .ValidPrincipals, ...), and
// .PluginName, .Fingerprint and .Hostname (the first principal without
// the canonical domain).
type templateData struct {
	*ssh.Certificate
	PluginName  string
	Fingerprint string
	Hostname    string
}

// parseTemplate parses an agent path template; empty is the default.
func parseTemplate(text string) (*agentpath.Template, error) {
	t, err := agentpath.Parse(text, DefaultAgentPathTemplate)
	if err != nil {
		return nil, fmt.Errorf("sshpop: %w", err)
	}
	return t, nil
}

// agentID runs the template and returns spiffe://<td>/spire/agent<path>.
func agentID(td spiffeid.TrustDomain, t *agentpath.Template, cert *ssh.Certificate, hostname string) (spiffeid.ID, error) {
	id, err := t.AgentID(td, templateData{Certificate: cert, PluginName: Type, Fingerprint: Fingerprint(cert), Hostname: hostname})
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("sshpop: %w", err)
	}
	return id, nil
}

// decanonicalize strips the canonical domain from a principal, as
// ssh_config's CanonicalDomains would add it; empty domain: unchanged.
// It reports false when fqdn is not in the domain.
func decanonicalize(fqdn, domain string) (string, bool) {
	if domain == "" {
		return fqdn, true
	}
	return strings.CutSuffix(fqdn, "."+domain)
}
