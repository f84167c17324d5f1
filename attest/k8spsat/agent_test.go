package k8spsat

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEvidencePayload: the agent sends SPIRE's exact JSON, with the
// token file as it is, read afresh at each attestation.
func TestEvidencePayload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("eyJ.first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := NewEvidence(AgentConfig{Cluster: "prod", TokenPath: path})
	if err != nil {
		t.Fatal(err)
	}
	if e.Type() != "k8s_psat" {
		t.Fatalf("type %q", e.Type())
	}
	got, err := e.Payload(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"cluster":"prod","token":"eyJ.first\n"}` {
		t.Fatalf("payload %s", got)
	}
	if err := os.WriteFile(path, []byte("eyJ.rotated"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.Payload(t.Context()); string(got) != `{"cluster":"prod","token":"eyJ.rotated"}` {
		t.Fatalf("after rotation: %s", got)
	}
	if _, err := e.Respond(t.Context(), []byte("x")); err == nil {
		t.Fatal("answered a challenge")
	}
}

func TestEvidenceErrors(t *testing.T) {
	if _, err := NewEvidence(AgentConfig{}); err == nil || !strings.Contains(err.Error(), "missing required cluster") {
		t.Fatalf("no cluster: %v", err)
	}
	e, err := NewEvidence(AgentConfig{Cluster: "c"})
	if err != nil || e.tokenPath != DefaultTokenPath {
		t.Fatalf("default token path: %v %v", e, err)
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, msg := range map[string]string{
		filepath.Join(dir, "missing"): "no such file",
		empty:                         "the file is empty",
	} {
		e, err := NewEvidence(AgentConfig{Cluster: "c", TokenPath: path})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Payload(t.Context()); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v, want %q", path, err, msg)
		}
	}
}
