package agent_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/signet-id/signet/attest"
	agentapi "github.com/signet-id/signet/server/api/agent"
	"github.com/signet-id/signet/spireid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// popAttestor is a proof-of-possession method in miniature: it challenges
// the agent with a nonce and wants it back reversed. Payloads "plain-error"
// and "bad-id" make it misbehave.
type popAttestor struct{}

func (popAttestor) Type() string { return "test_pop" }

func (popAttestor) Attest(ctx context.Context, req attest.NodeRequest) (attest.NodeResult, error) {
	switch string(req.Payload) {
	case "plain-error":
		return attest.NodeResult{}, errors.New("test_pop: broken")
	case "bad-id":
		return attest.NodeResult{AgentID: spiffeid.RequireFromPath(td, "/not-an-agent")}, nil
	}
	nonce := []byte("nonce-1")
	resp, err := req.Challenge(ctx, nonce)
	if err != nil {
		return attest.NodeResult{}, err
	}
	if !bytes.Equal(resp, reversed(nonce)) {
		return attest.NodeResult{}, status.Error(codes.PermissionDenied, "failed to attest: wrong challenge response")
	}
	id, err := spireid.AgentID(td, "test_pop", string(req.Payload))
	if err != nil {
		return attest.NodeResult{}, status.Error(codes.InvalidArgument, err.Error())
	}
	return attest.NodeResult{AgentID: id, Selectors: []*types.Selector{{Type: "test_pop", Value: string(req.Payload)}}, CanReattest: true}, nil
}

func reversed(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[len(b)-1-i] = b[i]
	}
	return out
}

// attestPop runs AttestAgent for test_pop, answering the challenge with
// answer(challenge).
func (e *env) attestPop(t *testing.T, payload string, answer func([]byte) []byte) (*agentv1.AttestAgentResponse_Result, error) {
	t.Helper()
	return e.attestStream(t, "test_pop", []byte(payload), answer)
}

// TestAttestAgentDispatchesByType: AttestAgent runs the attestor the
// request names, relays its challenges, and records what it returns.
func TestAttestAgentDispatchesByType(t *testing.T) {
	e := newEnv(t, popAttestor{})

	res, err := e.attestPop(t, "node-1", reversed)
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	if !res.Reattestable {
		t.Error("the result is not reattestable")
	}
	id := spiffeid.RequireFromPath(td, "/spire/agent/test_pop/node-1")
	rec, err := e.store.GetAgent(testContext(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.AttestationType != "test_pop" || !rec.CanReattest || len(rec.Selectors) != 1 || rec.Selectors[0].Value != "node-1" {
		t.Fatalf("agent record %v", rec)
	}

	tests := []struct {
		name, payload string
		code          codes.Code
		msg           string
	}{
		{"wrong response", "node-2", codes.PermissionDenied, "wrong challenge response"},
		{"plain error", "plain-error", codes.Internal, "failed to attest: test_pop: broken"},
		{"not an agent ID", "bad-id", codes.Internal, "not an agent ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.attestPop(t, tt.payload, func(b []byte) []byte { return b })
			if res.GetSvid() != nil {
				t.Fatalf("an SVID was issued (%v)", err)
			}
			wantStatus(t, err, tt.code, tt.msg)
		})
	}

	// Only the configured methods are served: join tokens are not.
	_, err = e.attest(t, "join_token", "0123456789abcdef0123456789abcdef")
	wantStatus(t, err, codes.FailedPrecondition, `could not find node attestor type "join_token" (supported: test_pop)`)
}

func TestNewRefusesDuplicateAttestors(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New accepted two attestors of one type")
		}
	}()
	agentapi.New(agentapi.Config{TrustDomain: td, NodeAttestors: []agentapi.NodeAttestor{popAttestor{}, popAttestor{}}})
}
