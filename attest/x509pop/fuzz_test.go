package x509pop_test

import (
	"context"
	"testing"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/x509pop"
	"google.golang.org/grpc/status"
)

// FuzzAttestPayload: any payload is refused with a gRPC status or
// attested, never a panic.
func FuzzAttestPayload(f *testing.F) {
	fx := newFixture(f)
	f.Add([]byte(`{"certificates":[]}`))
	f.Add([]byte(`{"certificates":["AAAA","AAAA"]}`))
	f.Add([]byte(`{"certificates":null}`))
	f.Add([]byte(`[]`))
	a, err := x509pop.NewAttestor(x509pop.Config{TrustDomain: td, Roots: fx.rootCerts(), Clock: fx.clk, Rand: &counter{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		_, err := a.Attest(context.Background(), attest.NodeRequest{Payload: payload, Challenge: func(context.Context, []byte) ([]byte, error) { return []byte("{}"), nil }})
		if _, ok := status.FromError(err); err != nil && !ok {
			t.Fatalf("not a status: %v", err)
		}
	})
}

// FuzzChallengeResponse: the server's parse and check of any response to
// a real challenge, and the agent's parse of any challenge.
func FuzzChallengeResponse(f *testing.F) {
	fx := newFixture(f)
	ev, _ := fx.evidenceFor(f, fx.defaultValid, fx.inter, true)
	payload, err := ev.Payload(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	a, err := x509pop.NewAttestor(x509pop.Config{TrustDomain: td, Roots: fx.rootCerts(), Clock: fx.clk, Rand: &counter{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"ecdsa_signature":{"nonce":"AAAA","r":"AQ==","s":"AQ=="}}`))
	f.Add([]byte(`{"rsa_signature":{"nonce":"AAAA","signature":"AQ=="}}`))
	f.Add([]byte(`{"ecdsa_signature":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := a.Attest(context.Background(), attest.NodeRequest{Payload: payload, Challenge: func(context.Context, []byte) ([]byte, error) { return b, nil }})
		if err == nil {
			t.Fatalf("a fuzzed response was accepted: %v", res.AgentID)
		}
		if _, ok := status.FromError(err); !ok {
			t.Fatalf("not a status: %v", err)
		}
		_, _ = ev.Respond(context.Background(), b)
	})
}
