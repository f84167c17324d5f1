package agent_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/jointoken"
	"github.com/signet-id/signet/attest/x509pop"
	"github.com/signet-id/signet/attest/x509pop/x509poptest"
	"github.com/signet-id/signet/clock/fakeclock"
	agentapi "github.com/signet-id/signet/server/api/agent"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// crossEnv serves join tokens and x509pop with the given
// agent_path_template, and issues x509pop evidence for a leaf CN.
type crossEnv struct {
	*env
	t  *testing.T
	ca *x509poptest.CA
}

func newCrossEnv(t *testing.T, template string) *crossEnv {
	t.Helper()
	now := time.Now()
	root := x509poptest.NewCA(t, "root", nil, now.Add(-time.Hour))
	e := newEnvWith(t, func(st *store.Store) []agentapi.NodeAttestor {
		jt, err := jointoken.NewAttestor(jointoken.Config{TrustDomain: td, Tokens: st, NotFound: store.ErrNotFound, Expired: store.ErrExpired})
		if err != nil {
			t.Fatal(err)
		}
		xp, err := x509pop.NewAttestor(x509pop.Config{TrustDomain: td, Roots: []*x509.Certificate{root.Cert}, Clock: fakeclock.New(now), AgentPathTemplate: template})
		if err != nil {
			t.Fatal(err)
		}
		return []agentapi.NodeAttestor{jt, xp}
	})
	return &crossEnv{env: e, t: t, ca: root}
}

// x509pop attests with a fresh leaf for cn, answering the challenge.
func (c *crossEnv) x509pop(cn string) (*x509.Certificate, error) {
	t := c.t
	t.Helper()
	now := time.Now()
	leaf, key := c.ca.Issue(t, x509poptest.Leaf{CN: cn, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)})
	kp, cp, ip := x509poptest.WriteFiles(t, t.TempDir(), key, leaf, c.ca.Cert)
	ev, err := x509pop.NewEvidence(x509pop.AgentPluginData{PrivateKeyPath: kp, CertificatePath: cp, IntermediatesPath: ip}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := ev.Payload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.attestStream(t, x509pop.Type, payload, func(ch []byte) []byte {
		r, err := ev.Respond(context.Background(), ch)
		if err != nil {
			t.Errorf("Respond: %v", err)
		}
		return r
	})
	if err == nil && res.GetSvid() == nil {
		t.Fatal("no SVID and no error")
	}
	if err != nil && res.GetSvid() != nil {
		t.Fatalf("an SVID was issued with an error (%v)", err)
	}
	return leaf, err
}

// unchanged fails unless the store holds exactly the records want.
func (c *crossEnv) unchanged(want ...*types.Agent) {
	c.t.Helper()
	ctx := testContext(c.t)
	if n, err := c.store.CountAgents(ctx, store.AgentFilter{}); err != nil || n != len(want) {
		c.t.Fatalf("%d agents stored (%v), want %d", n, err, len(want))
	}
	for _, w := range want {
		got, err := c.store.GetAgent(ctx, spiffeid.RequireFromPath(td, w.Id.Path))
		if err != nil || !proto.Equal(got, w) {
			c.t.Fatalf("agent record %v (%v), want it unchanged: %v", got, err, w)
		}
	}
}

func (c *crossEnv) record(id spiffeid.ID) *types.Agent {
	c.t.Helper()
	a, err := c.store.GetAgent(testContext(c.t), id)
	if err != nil {
		c.t.Fatal(err)
	}
	return a
}

// TestAttestWithAnotherMethod: a node already attested with one method
// attests with another. With each method's default IDs the second method
// gives a second agent (as SPIRE: nothing ties the two). When an
// agent_path_template names the other method's IDs (here x509pop's
// "/join_token/<CN>"), the attestation is refused with PermissionDenied
// naming both methods, whichever came first, no SVID is issued and the
// store is unchanged: the existing agent keeps its record, SVID and
// entries, and a join token presented meanwhile is not spent. (SPIRE
// updates the other method's record: the newcomer takes the agent over.)
func TestAttestWithAnotherMethod(t *testing.T) {
	t.Run("default IDs: another agent", func(t *testing.T) {
		c := newCrossEnv(t, "")
		tok := c.token(t, "", 600)
		if _, err := c.attest(t, jointoken.Type, tok); err != nil {
			t.Fatal(err)
		}
		jtID, _ := jointoken.AgentID(td, tok)
		before := c.record(jtID)
		leaf, err := c.x509pop("node1")
		if err != nil {
			t.Fatalf("x509pop after join_token: %v", err)
		}
		xp := c.record(spiffeid.RequireFromPath(td, "/spire/agent/x509pop/"+x509pop.Fingerprint(leaf)))
		if xp.AttestationType != x509pop.Type {
			t.Fatalf("x509pop record %v", xp)
		}
		c.unchanged(before, xp)
	})

	c := newCrossEnv(t, "/join_token/{{ .Subject.CommonName }}")
	t.Run("join_token, then x509pop with the same ID", func(t *testing.T) {
		const value = "node-a-0123456789abcdef"
		if _, err := c.attest(t, jointoken.Type, c.token(t, value, 600)); err != nil {
			t.Fatal(err)
		}
		id, _ := jointoken.AgentID(td, value)
		before := c.record(id)
		for range 2 { // a retry gets the same answer
			_, err := c.x509pop(value)
			wantStatus(t, err, codes.PermissionDenied, `agent spiffe://example.org/spire/agent/join_token/`+value+` was attested with "join_token", not "x509pop"`)
			c.unchanged(before)
		}
		if err := c.store.DeleteAgent(testContext(t), id); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("x509pop, then join_token with the same ID", func(t *testing.T) {
		const value = "node-b-0123456789abcdef"
		if _, err := c.x509pop(value); err != nil {
			t.Fatal(err)
		}
		id, _ := jointoken.AgentID(td, value)
		before := c.record(id)
		if before.AttestationType != x509pop.Type {
			t.Fatalf("record %v, want x509pop's", before)
		}
		tok := c.token(t, value, 600)
		res, err := c.attest(t, jointoken.Type, tok)
		if res.GetSvid() != nil {
			t.Fatal("a join token took over an x509pop agent")
		}
		wantStatus(t, err, codes.PermissionDenied, `agent spiffe://example.org/spire/agent/join_token/`+value+` was attested with "x509pop", not "join_token"`)
		c.unchanged(before)
		// The token was not spent: once the x509pop agent is evicted, it
		// attests.
		if err := c.store.DeleteAgent(testContext(t), id); err != nil {
			t.Fatal(err)
		}
		if _, err := c.attest(t, jointoken.Type, tok); err != nil {
			t.Fatalf("the refused token did not attest after eviction: %v", err)
		}
		if got := c.record(id); got.AttestationType != jointoken.Type {
			t.Fatalf("record %v, want join_token's", got)
		}
		if err := c.store.DeleteAgent(testContext(t), id); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("join_token again with a new token of the same value", func(t *testing.T) {
		const value = "node-c-0123456789abcdef"
		if _, err := c.attest(t, jointoken.Type, c.token(t, value, 600)); err != nil {
			t.Fatal(err)
		}
		id, _ := jointoken.AgentID(td, value)
		before := c.record(id)
		tok := c.token(t, value, 600)
		res, err := c.attest(t, jointoken.Type, tok)
		if res.GetSvid() != nil {
			t.Fatal("a join-token agent attested twice")
		}
		wantStatus(t, err, codes.AlreadyExists, `agent spiffe://example.org/spire/agent/join_token/`+value+` is already attested and "join_token" cannot re-attest`)
		c.unchanged(before)
		if err := c.store.DeleteAgent(testContext(t), id); err != nil {
			t.Fatal(err)
		}
		if _, err := c.attest(t, jointoken.Type, tok); err != nil {
			t.Fatalf("the refused token was spent: %v", err)
		}
	})
}
