package x509pop

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // sha1sum, as SPIRE's template functions
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"text/template"

	"github.com/signet-id/signet/spireid"
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

// templateFuncs is the subset of SPIRE's (sprig) template functions
// Signet offers, with sprig's argument order (the subject last, for
// pipelines). A template using any other function fails to parse.
func templateFuncs() template.FuncMap {
	return template.FuncMap{
		"lower":      strings.ToLower,
		"upper":      strings.ToUpper,
		"trim":       strings.TrimSpace,
		"trimAll":    func(cut, s string) string { return strings.Trim(s, cut) },
		"trimPrefix": func(p, s string) string { return strings.TrimPrefix(s, p) },
		"trimSuffix": func(p, s string) string { return strings.TrimSuffix(s, p) },
		"replace":    func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"contains":   func(sub, s string) bool { return strings.Contains(s, sub) },
		"hasPrefix":  func(p, s string) bool { return strings.HasPrefix(s, p) },
		"hasSuffix":  func(p, s string) bool { return strings.HasSuffix(s, p) },
		"sha1sum": func(s string) string {
			sum := sha1.Sum([]byte(s)) //nolint:gosec // as sprig
			return hex.EncodeToString(sum[:])
		},
		"sha256sum": func(s string) string {
			sum := sha256.Sum256([]byte(s))
			return hex.EncodeToString(sum[:])
		},
	}
}

// PathTemplate is a parsed agent_path_template.
type PathTemplate struct{ t *template.Template }

// ParsePathTemplate parses an agent_path_template (text/template, a
// missing key is an error, as SPIRE's); empty text is the default.
func ParsePathTemplate(text string) (*PathTemplate, error) {
	if text == "" {
		text = DefaultAgentPathTemplate
	}
	t, err := template.New("agent_path_template").Option("missingkey=error").Funcs(templateFuncs()).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("x509pop: agent_path_template %q: %w", text, err)
	}
	return &PathTemplate{t: t}, nil
}

// AgentID renders the template for leaf and returns
// spiffe://<td>/spire/agent<rendered path>. The rendered path must start
// with '/' and be a valid SPIFFE ID path, as SPIRE requires.
func (p *PathTemplate) AgentID(td spiffeid.TrustDomain, leaf *x509.Certificate) (spiffeid.ID, error) {
	var buf bytes.Buffer
	err := p.t.Execute(&buf, TemplateData{
		Certificate:     leaf,
		SerialNumberHex: SerialNumberHex(leaf.SerialNumber),
		Fingerprint:     Fingerprint(leaf),
		PluginName:      Type,
		TrustDomain:     td.Name(),
		URISanSelectors: SANSelectors(td, leaf),
	})
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("x509pop: agent_path_template: %w", err)
	}
	path := buf.String()
	rest, ok := strings.CutPrefix(path, "/")
	if !ok {
		return spiffeid.ID{}, fmt.Errorf("x509pop: agent path %q does not start with '/'", path)
	}
	segs := strings.Split(rest, "/")
	if len(segs) < 1 || segs[0] == "" {
		return spiffeid.ID{}, errors.New("x509pop: agent path is empty")
	}
	return spireid.AgentID(td, segs[0], segs[1:]...)
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
