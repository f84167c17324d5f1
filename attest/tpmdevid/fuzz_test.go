package tpmdevid_test

import (
	"context"
	"testing"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/tpmdevid"
	"github.com/signet-id/signet/attest/tpmdevid/tpmdevidtest"
	"google.golang.org/grpc/status"
)

// realPayload is a genuine payload from a provisioned swtpm, its
// session closed.
func realPayload(f *testing.F, p *pki) []byte {
	dev := tpmdevidtest.Provision(f, p.options("node-1"))
	ev := evidence(f, dev)
	b := payload(f, ev)
	ev.Close()
	return b
}

// FuzzAttestPayload: any payload is refused with a gRPC status or
// challenged, never a panic; no answer to a challenge attests.
func FuzzAttestPayload(f *testing.F) {
	p := newPKI(f)
	f.Add(realPayload(f, p))
	f.Add([]byte(`{"DevIDCert":[]}`))
	f.Add([]byte(`{"DevIDCert":["AAAA","AAAA"],"AKPub":"AAAA"}`))
	f.Add([]byte(`{"DevIDCert":null}`))
	f.Add([]byte(`[]`))
	a := p.attestor(f, p.now)
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := a.Attest(context.Background(), attest.NodeRequest{Payload: b, Challenge: func(context.Context, []byte) ([]byte, error) { return []byte("{}"), nil }})
		if err == nil {
			t.Fatalf("attested as %v", res.AgentID)
		}
		if _, ok := status.FromError(err); !ok {
			t.Fatalf("not a status: %v", err)
		}
	})
}

// FuzzChallengeResponse: the server's parse and check of any response to
// the challenge for a genuine payload, and the agent's parse of any
// challenge.
func FuzzChallengeResponse(f *testing.F) {
	p := newPKI(f)
	pl := realPayload(f, p)
	a := p.attestor(f, p.now)
	f.Add([]byte(`{"DevID":"AAAA","CredActivation":"AAAA"}`))
	f.Add([]byte(`{"DevID":null}`))
	f.Add([]byte(`{"DevID":"AAAA","CredActivation":{"Credential":"AA==","Secret":"AA=="}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := a.Attest(context.Background(), attest.NodeRequest{Payload: pl, Challenge: func(context.Context, []byte) ([]byte, error) { return b, nil }})
		if err == nil {
			t.Fatalf("a fuzzed response was accepted: %v", res.AgentID)
		}
		if _, ok := status.FromError(err); !ok {
			t.Fatalf("not a status: %v", err)
		}
		_, _ = tpmdevid.ParseChallenge(b)
	})
}
