package x509pop

import (
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/signet-id/signet/attest/agentpath"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultAgentPathTemplate is SPIRE's default agent path (external_pki
// mode): the method, then the leaf's fingerprint.
const DefaultAgentPathTemplate = "/{{ .PluginName }}/{{ .Fingerprint }}"

// TemplateData is what an agent_path_template sees: SPIRE's fields, and
// every field of the leaf certificate (.Subject.CommonName, ...).
type TemplateData struct {
	*x509.Certificate
	SerialNumberHex string
	Fingerprint     string
	PluginName      string
	TrustDomain     string
	// SVIDPathTrimmed is SPIRE's spiffe-mode field; always empty here
	// (only external_pki mode is supported).
	SVIDPathTrimmed string
	// URISanSelectors maps each x509pop://<td>/<key>/<value> URI SAN's key
	// to its value.
	URISanSelectors map[string]string
}

// PathTemplate is a parsed agent_path_template.
type PathTemplate struct{ t *agentpath.Template }

// ParsePathTemplate parses an agent_path_template (text/template, a
// missing key is an error, as SPIRE's); empty text is the default.
func ParsePathTemplate(text string) (*PathTemplate, error) {
	t, err := agentpath.Parse(text, DefaultAgentPathTemplate)
	if err != nil {
		return nil, fmt.Errorf("x509pop: %w", err)
	}
	return &PathTemplate{t: t}, nil
}

// AgentID renders the template for leaf and returns
// spiffe://<td>/spire/agent<rendered path>.
func (p *PathTemplate) AgentID(td spiffeid.TrustDomain, leaf *x509.Certificate) (spiffeid.ID, error) {
	id, err := p.t.AgentID(td, TemplateData{
		Certificate:     leaf,
		SerialNumberHex: SerialNumberHex(leaf.SerialNumber),
		Fingerprint:     Fingerprint(leaf),
		PluginName:      Type,
		TrustDomain:     td.Name(),
		URISanSelectors: SANSelectors(td, leaf),
	})
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("x509pop: %w", err)
	}
	return id, nil
}

// SANSelectors returns SPIRE's URI SAN selector map of leaf: for each URI
// SAN x509pop://<td>/<key>/<value...>, key → value (the last one of a key
// wins). A URI without both parts is skipped.
func SANSelectors(td spiffeid.TrustDomain, leaf *x509.Certificate) map[string]string {
	m := make(map[string]string)
	prefix := Type + "://" + td.Name() + "/"
	for _, u := range leaf.URIs {
		if !strings.HasPrefix(u.String(), prefix) {
			continue
		}
		key, value, ok := strings.Cut(strings.Trim(u.Path, "/"), "/")
		if !ok {
			continue
		}
		m[key] = value
	}
	return m
}
