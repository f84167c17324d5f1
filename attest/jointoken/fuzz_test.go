package jointoken_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/jointoken"
	"google.golang.org/grpc/status"
)

// FuzzAttestPayload: any join token from the network is refused with a
// gRPC status or attested, never a panic; an attested token is a live
// one of at most MaxLength bytes, and its agent ID is exactly
// spiffe://<td>/spire/agent/join_token/<token> (one path segment: no
// token escapes the join_token namespace).
func FuzzAttestPayload(f *testing.F) {
	for _, s := range []string{"0123456789abcdef-valid", "", "a/b", "..", ".", "%2F", "a b", "ü", strings.Repeat("x", jointoken.MaxLength+1), "\x00"} {
		f.Add([]byte(s))
	}
	now := time.Unix(1_800_000_000, 0)
	st := &tokens{exp: map[string]time.Time{}}
	a, err := jointoken.NewAttestor(jointoken.Config{TrustDomain: td, Tokens: st, NotFound: errNotFound, Expired: errExpired, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		token := string(payload)
		st.mu.Lock()
		st.exp[token] = now.Add(time.Minute) // every token is live
		st.mu.Unlock()
		res, err := a.Attest(context.Background(), attest.NodeRequest{Payload: payload})
		if err != nil {
			if _, ok := status.FromError(err); !ok {
				t.Fatalf("not a status: %v", err)
			}
			return
		}
		want := "/spire/agent/join_token/" + token
		if len(payload) > jointoken.MaxLength || res.AgentID.TrustDomain() != td || res.AgentID.Path() != want || strings.Count(res.AgentID.Path(), "/") != 4 || res.CanReattest {
			t.Fatalf("token %q attested as %v (reattest %v)", token, res.AgentID, res.CanReattest)
		}
		st.mu.Lock()
		_, unspent := st.exp[token]
		st.mu.Unlock()
		if unspent {
			t.Fatalf("token %q attested without being spent", token)
		}
	})
}
