// Package agentpath renders the agent_path_template of node attestation
// methods, as SPIRE's x509pop and sshpop plugins do: a text/template (a
// missing key is an error) over the data a method exposes, with a subset of
// SPIRE's (sprig) string functions, giving spiffe://<td>/spire/agent<path>.
package agentpath

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // sha1sum, as SPIRE's template functions
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"text/template"

	"github.com/signet-id/signet/spireid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Funcs returns the functions a template may call: the subset of SPIRE's
// (sprig) functions that name paths, with sprig's argument order (the
// subject last, for pipelines). Any other function fails to parse.
func Funcs() template.FuncMap {
	return template.FuncMap{
		"lower":      strings.ToLower,
		"upper":      strings.ToUpper,
		"trim":       strings.TrimSpace,
		"trimAll":    func(cut, s string) string { return strings.Trim(s, cut) },
		"trimPrefix": func(p, s string) string { return strings.TrimPrefix(s, p) },
		"trimSuffix": func(p, s string) string { return strings.TrimSuffix(s, p) },
		"replace":    func(old, repl, s string) string { return strings.ReplaceAll(s, old, repl) },
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

// Template is a parsed agent path template.
type Template struct{ t *template.Template }

// Parse parses text, or def when text is empty.
func Parse(text, def string) (*Template, error) {
	if text == "" {
		text = def
	}
	t, err := template.New("agent_path_template").Option("missingkey=error").Funcs(Funcs()).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("agent_path_template %q: %w", text, err)
	}
	return &Template{t: t}, nil
}

// AgentID renders the template over data and returns
// spiffe://<td>/spire/agent<path>. The rendered path must start with '/'
// and be made of valid SPIFFE ID path segments, as SPIRE requires.
func (t *Template) AgentID(td spiffeid.TrustDomain, data any) (spiffeid.ID, error) {
	var buf bytes.Buffer
	if err := t.t.Execute(&buf, data); err != nil {
		return spiffeid.ID{}, fmt.Errorf("agent_path_template: %w", err)
	}
	path := buf.String()
	rest, ok := strings.CutPrefix(path, "/")
	if !ok {
		return spiffeid.ID{}, fmt.Errorf("agent path %q does not start with '/'", path)
	}
	segs := strings.Split(rest, "/")
	if segs[0] == "" {
		return spiffeid.ID{}, errors.New("agent path is empty")
	}
	return spireid.AgentID(td, segs[0], segs[1:]...)
}
