package agentpath

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestAgentID(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	type data struct{ Name, Host string }
	tests := []struct {
		name, text, want, err string
	}{
		{"default", "", "spiffe://example.org/spire/agent/m/node-1", ""},
		{"functions", `/m/{{ .Host | trimSuffix ".example.org" | upper }}`, "spiffe://example.org/spire/agent/m/WEB", ""},
		{"sha256sum", `/m/{{ sha256sum .Name }}`, "spiffe://example.org/spire/agent/m/" + hexSHA256("node-1"), ""},
		{"no leading slash", `m/{{ .Name }}`, "", "does not start with '/'"},
		{"empty", `/`, "", "agent path is empty"},
		{"bad segment", `/m/{{ .Name }}/../x`, "", "spireid"},
		{"missing key", `/m/{{ .Missing }}`, "", "agent_path_template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := Parse(tt.text, "/m/{{ .Name }}")
			if err != nil {
				t.Fatal(err)
			}
			id, err := tmpl.AgentID(td, data{Name: "node-1", Host: "web.example.org"})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || id.String() != tt.want {
				t.Fatalf("got %v, %v; want %s", id, err, tt.want)
			}
		})
	}
}

func TestParseRefusesUnknownFunctions(t *testing.T) {
	if _, err := Parse(`/m/{{ .Name | b64enc }}`, ""); err == nil || !strings.Contains(err.Error(), "b64enc") {
		t.Fatalf("err %v, want the unknown function named", err)
	}
}

func hexSHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
