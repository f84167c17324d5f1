package agent_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/signet-id/signet/attest/jointoken"
	agentapi "github.com/signet-id/signet/server/api/agent"
	"github.com/signet-id/signet/server/store"
	"github.com/signet-id/signet/telemetry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// syncBuffer is a log sink the server goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// events returns the JSON log records whose event field is name.
func (s *syncBuffer) events(t *testing.T, name string) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec[telemetry.FieldEvent] == name {
			out = append(out, rec)
		}
	}
	return out
}

// TestAttestationFailuresAreSecurityEvents performs refused attestations
// (a forged join token, a replayed one, a method not served) and checks
// the attestation_failed events' JSON fields and the failure counts.
func TestAttestationFailuresAreSecurityEvents(t *testing.T) {
	logs := &syncBuffer{}
	type failure struct {
		method string
		code   codes.Code
	}
	var mu sync.Mutex
	var failures []failure
	e := newEnvWith(t, func(*store.Store) []agentapi.NodeAttestor { return nil }, func(c *agentapi.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		c.AttestationFailed = func(method string, code codes.Code) {
			mu.Lock()
			defer mu.Unlock()
			failures = append(failures, failure{method, code})
		}
	})
	tok := e.token(t, "", 600)
	if _, err := e.attest(t, jointoken.Type, tok); err != nil {
		t.Fatalf("first use of the token: %v", err)
	}
	// The replay is AlreadyExists today; SPIRE answers InvalidArgument
	// (the token is used), which conformance/spire expects: either is a
	// refusal, and the event must carry the code the agent got.
	var got []string
	for _, tc := range []struct {
		typ, payload string
		codes        []codes.Code
	}{
		{jointoken.Type, "forged-token", []codes.Code{codes.InvalidArgument}},
		{jointoken.Type, tok, []codes.Code{codes.AlreadyExists, codes.InvalidArgument}}, // replayed
		{"bogus_method", "x", []codes.Code{codes.FailedPrecondition}},
	} {
		_, err := e.attest(t, tc.typ, tc.payload)
		if !slices.Contains(tc.codes, status.Code(err)) {
			t.Fatalf("attest %s %q: %v, want one of %v", tc.typ, tc.payload, err, tc.codes)
		}
		got = append(got, status.Code(err).String())
	}
	evs := logs.events(t, telemetry.EventAttestationFailed)
	if len(evs) != 3 {
		t.Fatalf("attestation_failed events: %d, want 3\n%s", len(evs), logs.b.String())
	}
	want := []struct{ method, code string }{{"join_token", got[0]}, {"join_token", got[1]}, {"unknown", got[2]}}
	for i, ev := range evs {
		if ev["level"] != "WARN" || ev["msg"] != "security event: attestation_failed" || ev[telemetry.FieldCategory] != "security" {
			t.Errorf("event %d: level/msg/category: %v", i, ev)
		}
		if ev[telemetry.FieldMethod] != want[i].method || ev[telemetry.FieldCode] != want[i].code {
			t.Errorf("event %d: method %v code %v, want %v", i, ev[telemetry.FieldMethod], ev[telemetry.FieldCode], want[i])
		}
		if p, _ := ev[telemetry.FieldPeer].(string); !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("event %d: peer %q", i, p)
		}
		// The agent ID the evidence claims, once the method got that far.
		wantID := map[int]string{0: "spiffe://example.org/spire/agent/join_token/forged-token", 1: "spiffe://example.org/spire/agent/join_token/" + tok}[i]
		if ev[telemetry.FieldAgentID] != wantID && (i != 1 || ev[telemetry.FieldAgentID] != "") {
			t.Errorf("event %d: agent_id %v, want %q", i, ev[telemetry.FieldAgentID], wantID)
		}
		if r, _ := ev[telemetry.FieldReason].(string); r == "" {
			t.Errorf("event %d: empty reason", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) != 3 || failures[0] != (failure{"join_token", codes.InvalidArgument}) || failures[2] != (failure{"unknown", codes.FailedPrecondition}) {
		t.Errorf("AttestationFailed calls: %v", failures)
	}
}
