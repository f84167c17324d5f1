package secrets

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzPolicyPattern fuzzes secret policies as an admin (or a planted etcd
// record) supplies them: Validate must not panic, and a SPIFFE ID pattern
// must never grant a secret to an ID of another trust domain, nor an exact
// pattern to any ID but itself.
func FuzzPolicyPattern(f *testing.F) {
	f.Add("spiffe://example.org/ns/*", "spiffe://example.org/ns/a", "secret/app/db", "kv2")
	f.Add("spiffe://example.org/ns/**", "spiffe://example.org/ns/a/b", "auth/token/create", "leased")
	f.Add("spiffe://example.org/a*b*c/x", "spiffe://example.org/abbc/x", "a//b", "")
	f.Add("spiffe://*/x", "spiffe://evil.org/x", "../x", "kv2")
	f.Add("spiffe://example.org/**/x", "spiffe://example.org.evil.org/x", "/abs", "kv2")
	f.Fuzz(func(t *testing.T, pattern, id, path, engine string) {
		p := Policy{ID: "s", SPIFFEIDPattern: pattern, Path: path, Engine: Engine(engine)}
		_ = p.Validate()
		td, err := p.TrustDomain()
		if err != nil {
			return
		}
		sid, err := spiffeid.FromString(id)
		if err != nil {
			return
		}
		if !p.Matches(sid) {
			return
		}
		if sid.TrustDomain() != td {
			t.Fatalf("pattern %q of %s grants %s", pattern, td, sid)
		}
		if !strings.Contains(pattern, "*") && sid.String() != pattern {
			t.Fatalf("exact pattern %q grants %s", pattern, sid)
		}
	})
}
