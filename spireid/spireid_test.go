package spireid_test

import (
	"testing"

	"github.com/signet-id/signet/spireid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func TestServerID(t *testing.T) {
	if got, want := spireid.ServerID(td).String(), "spiffe://example.org/spire/server"; got != want {
		t.Fatalf("ServerID = %q, want %q", got, want)
	}
}

func TestAgentID(t *testing.T) {
	tests := []struct {
		name   string
		td     spiffeid.TrustDomain
		method string
		parts  []string
		want   string // empty: an error is expected
	}{
		{"join token", td, "join_token", []string{"4f1c2b3a-0000-4000-8000-000000000001"}, "spiffe://example.org/spire/agent/join_token/4f1c2b3a-0000-4000-8000-000000000001"},
		{"several parts", td, "k8s_psat", []string{"cluster", "node-uid"}, "spiffe://example.org/spire/agent/k8s_psat/cluster/node-uid"},
		{"method only", td, "x509pop", nil, "spiffe://example.org/spire/agent/x509pop"},
		{"empty method", td, "", []string{"x"}, ""},
		{"zero trust domain", spiffeid.TrustDomain{}, "join_token", []string{"x"}, ""},
		{"slash in a part", td, "join_token", []string{"a/b"}, ""},
		{"dot segment", td, "join_token", []string{".."}, ""},
		{"path traversal", td, "join_token", []string{"a/../b"}, ""},
		{"empty part", td, "join_token", []string{""}, ""},
		{"bad character", td, "join_token", []string{"a b"}, ""},
		{"slash in method", td, "join/token", []string{"x"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := spireid.AgentID(tt.td, tt.method, tt.parts...)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("AgentID = %q, want an error", id)
				}
				return
			}
			if err != nil {
				t.Fatalf("AgentID: %v", err)
			}
			if id.String() != tt.want {
				t.Fatalf("AgentID = %q, want %q", id, tt.want)
			}
			if !spireid.IsAgentID(id) {
				t.Fatalf("IsAgentID(%q) = false", id)
			}
		})
	}
}

func TestRecognisers(t *testing.T) {
	tests := []struct {
		path                    string
		agent, server, reserved bool
	}{
		{"/spire/server", false, true, true},
		{"/spire/agent/join_token/x", true, false, true},
		{"/spire/agent/", true, false, true},
		{"/spire/agent", false, false, true},
		{"/spire", false, false, true},
		{"/spire/other", false, false, true},
		{"/spirex", false, false, false},
		{"/spire-agent/x", false, false, false},
		{"/web", false, false, false},
		{"/web/spire/agent/x", false, false, false},
		{"", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := spireid.IsAgentPath(tt.path); got != tt.agent {
				t.Errorf("IsAgentPath = %v, want %v", got, tt.agent)
			}
			if got := spireid.IsReserved(tt.path); got != tt.reserved {
				t.Errorf("IsReserved = %v, want %v", got, tt.reserved)
			}
			id, err := spiffeid.FromPath(td, tt.path)
			if err != nil {
				return // not a valid ID path (such as a trailing slash)
			}
			if got := spireid.IsAgentID(id); got != tt.agent {
				t.Errorf("IsAgentID = %v, want %v", got, tt.agent)
			}
			if got := spireid.IsServerID(id); got != tt.server {
				t.Errorf("IsServerID = %v, want %v", got, tt.server)
			}
		})
	}
	if spireid.IsAgentID(spiffeid.ID{}) || spireid.IsServerID(spiffeid.ID{}) {
		t.Error("the zero ID is neither an agent nor a server")
	}
}
