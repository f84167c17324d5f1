package secrets

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Engine says how a policy's Vault path is read.
type Engine string

const (
	// EngineKV2 reads a KV version 2 secret and follows its versions.
	EngineKV2 Engine = "kv2"
	// EngineLeased reads (or writes, with Params) a path whose response
	// carries a lease, and renews or replaces it.
	EngineLeased Engine = "leased"
)

// ErrInvalidPolicy is returned (wrapped) when a policy fails validation.
var ErrInvalidPolicy = errors.New("secrets: invalid policy")

// Limits on policies.
const (
	maxPolicyIDLen = 128
	maxPathLen     = 512
	maxParams      = 32
	maxParamLen    = 1024
)

var policyIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Policy grants the workloads whose SPIFFE ID matches SPIFFEIDPattern the
// secret at Path, under the name ID.
type Policy struct {
	// ID is the secret's name, as workloads ask for it.
	ID string `json:"id"`
	// SPIFFEIDPattern is an exact SPIFFE ID or a glob: "*" matches any
	// characters within one path segment, and a final "/**" matches any
	// number of further segments (spiffe://td/ns/* matches
	// spiffe://td/ns/a but not spiffe://td/ns/a/b; spiffe://td/ns/**
	// matches both).
	SPIFFEIDPattern string `json:"spiffe_id_pattern"`
	// Path is the Vault path. For EngineKV2 its first segment is the KV
	// mount and the rest the secret's path in it ("secret/app/db" is
	// `vault kv get -mount=secret app/db`). For EngineLeased it is the API
	// path ("auth/token/create", "pki/issue/web").
	Path   string `json:"path"`
	Engine Engine `json:"engine"`
	// Field, if set, selects one field of the secret's data; the value is
	// then that field alone (a string as is, anything else as JSON).
	Field string `json:"field,omitempty"`
	// Params, for EngineLeased, are written to Path (POST) instead of
	// reading it. They are configuration (a TTL, a common name), never
	// secret values: they are stored in etcd.
	Params map[string]string `json:"params,omitempty"`
	// Revision is the etcd ModRevision the policy was read at (set by the
	// PolicyStore; ignored on create).
	Revision int64 `json:"-"`
}

// Validate checks p.
func (p Policy) Validate() error {
	switch {
	case len(p.ID) == 0 || len(p.ID) > maxPolicyIDLen || !policyIDRe.MatchString(p.ID):
		return fmt.Errorf("%w: id %q must be 1-%d characters of letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalidPolicy, p.ID, maxPolicyIDLen)
	case p.Path == "" || len(p.Path) > maxPathLen:
		return fmt.Errorf("%w: path must be 1-%d characters", ErrInvalidPolicy, maxPathLen)
	case strings.HasPrefix(p.Path, "/") || strings.Contains(p.Path, "//") || strings.Contains(p.Path, ".."):
		return fmt.Errorf("%w: path %q must be relative, without empty or '..' segments", ErrInvalidPolicy, p.Path)
	case len(p.Field) > maxPathLen:
		return fmt.Errorf("%w: field too long", ErrInvalidPolicy)
	}
	if _, err := compilePattern(p.SPIFFEIDPattern); err != nil {
		return err
	}
	switch p.Engine {
	case EngineKV2:
		if _, _, err := splitKV2(p.Path); err != nil {
			return err
		}
		if len(p.Params) > 0 {
			return fmt.Errorf("%w: params are for leased secrets only", ErrInvalidPolicy)
		}
	case EngineLeased:
		if len(p.Params) > maxParams {
			return fmt.Errorf("%w: at most %d params", ErrInvalidPolicy, maxParams)
		}
		for k, v := range p.Params {
			if k == "" || len(k)+len(v) > maxParamLen {
				return fmt.Errorf("%w: param %q is empty or too long", ErrInvalidPolicy, k)
			}
		}
	default:
		return fmt.Errorf("%w: engine %q (use %s or %s)", ErrInvalidPolicy, p.Engine, EngineKV2, EngineLeased)
	}
	return nil
}

// Matches reports whether id may receive the policy's secret.
func (p Policy) Matches(id spiffeid.ID) bool {
	m, err := compilePattern(p.SPIFFEIDPattern)
	if err != nil {
		return false
	}
	return m.match(id)
}

// TrustDomain returns the trust domain of the policy's SPIFFE ID pattern.
func (p Policy) TrustDomain() (spiffeid.TrustDomain, error) {
	m, err := compilePattern(p.SPIFFEIDPattern)
	if err != nil {
		return spiffeid.TrustDomain{}, err
	}
	return m.td, nil
}

// splitKV2 splits a KV v2 policy path into its mount and secret path.
func splitKV2(path string) (mount, secret string, err error) {
	mount, secret, ok := strings.Cut(path, "/")
	if !ok || mount == "" || secret == "" {
		return "", "", fmt.Errorf("%w: kv2 path %q must be MOUNT/PATH", ErrInvalidPolicy, path)
	}
	return mount, secret, nil
}

// idPattern is a parsed SPIFFEIDPattern.
type idPattern struct {
	td       spiffeid.TrustDomain
	segments []string // path segments; may contain '*'
	deep     bool     // pattern ended in "/**"
}

func compilePattern(s string) (*idPattern, error) {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return nil, fmt.Errorf("%w: SPIFFE ID pattern %q must start with spiffe://", ErrInvalidPolicy, s)
	}
	tdName, path, _ := strings.Cut(rest, "/")
	td, err := spiffeid.TrustDomainFromString(tdName)
	if err != nil {
		return nil, fmt.Errorf("%w: SPIFFE ID pattern %q: %w", ErrInvalidPolicy, s, err)
	}
	p := &idPattern{td: td}
	if path == "" {
		return nil, fmt.Errorf("%w: SPIFFE ID pattern %q has no path", ErrInvalidPolicy, s)
	}
	segs := strings.Split(path, "/")
	if segs[len(segs)-1] == "**" {
		p.deep = true
		segs = segs[:len(segs)-1]
	}
	for _, seg := range segs {
		if seg == "" || seg == "." || seg == ".." || strings.Contains(seg, "**") {
			return nil, fmt.Errorf("%w: SPIFFE ID pattern %q: bad segment %q", ErrInvalidPolicy, s, seg)
		}
		// The segment with '*' removed must be valid SPIFFE ID path
		// characters.
		if _, err := spiffeid.FromSegments(td, strings.ReplaceAll(seg, "*", "x")); err != nil {
			return nil, fmt.Errorf("%w: SPIFFE ID pattern %q: %w", ErrInvalidPolicy, s, err)
		}
	}
	if len(segs) == 0 && !p.deep {
		return nil, fmt.Errorf("%w: SPIFFE ID pattern %q has no path", ErrInvalidPolicy, s)
	}
	p.segments = segs
	return p, nil
}

func (p *idPattern) match(id spiffeid.ID) bool {
	if id.TrustDomain() != p.td {
		return false
	}
	segs := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if id.Path() == "" {
		return false
	}
	if len(segs) < len(p.segments) || (!p.deep && len(segs) != len(p.segments)) {
		return false
	}
	if p.deep && len(segs) == len(p.segments) {
		return false // "**" needs at least one more segment
	}
	for i, pat := range p.segments {
		if !globSegment(pat, segs[i]) {
			return false
		}
	}
	return true
}

// globSegment matches s against pat, where '*' matches any run of
// characters (segments never contain '/').
func globSegment(pat, s string) bool {
	// Iterative wildcard matching with single backtrack point: linear in
	// practice, bounded by len(pat)*len(s).
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(pat) && pat[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(pat) && pat[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pat) && pat[pi] == '*' {
		pi++
	}
	return pi == len(pat)
}
