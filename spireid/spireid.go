// Package spireid builds and recognises the SPIRE-shaped SPIFFE IDs the
// server and its agents carry: spiffe://<td>/spire/server for the server
// and spiffe://<td>/spire/agent/<method>/<...> for attested agents. The
// whole /spire namespace is reserved for them.
package spireid

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	// Namespace is the reserved path namespace of servers and agents.
	Namespace = "/spire"
	// ServerPath is the path of a server's SPIFFE ID.
	ServerPath = Namespace + "/server"
	// AgentPrefix is the path prefix of every agent SPIFFE ID.
	AgentPrefix = Namespace + "/agent/"
)

// ServerID returns the server's SPIFFE ID in td.
func ServerID(td spiffeid.TrustDomain) spiffeid.ID {
	return spiffeid.RequireFromPath(td, ServerPath)
}

// AgentID returns spiffe://<td>/spire/agent/<method>/<parts...>. method
// and every part are single path segments: each must be non-empty, not
// "." or "..", hold no '/' and only the characters the SPIFFE ID spec
// allows (letters, digits, '.', '-', '_'). Nothing is escaped: a value
// that is not a valid segment is refused, so two different inputs never
// map to one ID.
func AgentID(td spiffeid.TrustDomain, method string, parts ...string) (spiffeid.ID, error) {
	if td.IsZero() {
		return spiffeid.ID{}, fmt.Errorf("spireid: agent ID: trust domain is empty")
	}
	if method == "" {
		return spiffeid.ID{}, fmt.Errorf("spireid: agent ID: attestation method is empty")
	}
	segs := make([]string, 0, 3+len(parts))
	segs = append(segs, "spire", "agent", method)
	segs = append(segs, parts...)
	id, err := spiffeid.FromSegments(td, segs...)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("spireid: agent ID for method %q: %w", method, err)
	}
	return id, nil
}

// IsAgentPath reports whether path is an agent ID's path (it starts with
// /spire/agent/).
func IsAgentPath(path string) bool { return strings.HasPrefix(path, AgentPrefix) }

// IsAgentID reports whether id is an agent ID.
func IsAgentID(id spiffeid.ID) bool { return !id.IsZero() && IsAgentPath(id.Path()) }

// IsServerID reports whether id is the server ID of its trust domain.
func IsServerID(id spiffeid.ID) bool { return !id.IsZero() && id.Path() == ServerPath }

// IsReserved reports whether path is in the reserved /spire namespace:
// /spire itself or anything below it.
func IsReserved(path string) bool {
	return path == Namespace || strings.HasPrefix(path, Namespace+"/")
}
