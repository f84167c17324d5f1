package agent_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/x509pop"
	"github.com/signet-id/signet/attest/x509pop/x509poptest"
	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"google.golang.org/grpc/codes"
)

// TestAttestAgentX509pop runs x509pop over the real AttestAgent stream:
// the agent ID, selectors and reattestability are recorded; a refused
// attestation gets SPIRE's code and stores nothing.
func TestAttestAgentX509pop(t *testing.T) {
	now := time.Now()
	root := x509poptest.NewCA(t, "root", nil, now.Add(-time.Hour))
	inter := x509poptest.NewCA(t, "intermediate", root, now.Add(-time.Hour))
	other := x509poptest.NewCA(t, "other", nil, now.Add(-time.Hour))
	a, err := x509pop.NewAttestor(x509pop.Config{TrustDomain: td, Roots: []*x509.Certificate{root.Cert}, Clock: fakeclock.New(now)})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, a)

	evidence := func(ca *x509poptest.CA, l x509poptest.Leaf) (*x509pop.Evidence, *x509.Certificate) {
		leaf, key := ca.Issue(t, l)
		kp, cp, ip := x509poptest.WriteFiles(t, t.TempDir(), key, leaf, ca.Cert)
		ev, err := x509pop.NewEvidence(x509pop.AgentPluginData{PrivateKeyPath: kp, CertificatePath: cp, IntermediatesPath: ip}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ev, leaf
	}
	valid := x509poptest.Leaf{CN: "node1", NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)}
	respond := func(ev *x509pop.Evidence) func([]byte) []byte {
		return func(ch []byte) []byte {
			r, err := ev.Respond(context.Background(), ch)
			if err != nil {
				t.Errorf("Respond: %v", err)
			}
			return r
		}
	}
	payload := func(ev *x509pop.Evidence) []byte {
		p, err := ev.Payload(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	ev, leaf := evidence(inter, valid)
	var recorded []byte
	res, err := e.attestStream(t, "x509pop", payload(ev), func(ch []byte) []byte {
		recorded = respond(ev)(ch)
		return recorded
	})
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	wantID := "spiffe://example.org/spire/agent/x509pop/" + x509pop.Fingerprint(leaf)
	if got := res.GetSvid().GetId(); got.GetPath() != "/spire/agent/x509pop/"+x509pop.Fingerprint(leaf) || !res.Reattestable {
		t.Fatalf("result %v, want %s, reattestable", res, wantID)
	}
	rec, err := e.store.GetAgent(testContext(t), spiffeid.RequireFromString(wantID))
	if err != nil {
		t.Fatal(err)
	}
	if rec.AttestationType != "x509pop" || !rec.CanReattest || len(rec.Selectors) != 4 ||
		rec.Selectors[0].Value != "subject:cn:node1" || rec.Selectors[1].Value != "ca:fingerprint:"+x509pop.Fingerprint(inter.Cert) {
		t.Fatalf("agent record %v", rec)
	}

	expired, _ := evidence(inter, x509poptest.Leaf{CN: "old", NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Minute)})
	untrusted, _ := evidence(other, valid)
	ev2, _ := evidence(inter, valid)
	forger, _ := evidence(inter, valid)
	payload(forger)
	tests := []struct {
		name    string
		payload []byte
		answer  func([]byte) []byte
		code    codes.Code
		msg     string
	}{
		{"expired leaf", payload(expired), respond(expired), codes.PermissionDenied, "certificate verification failed"},
		{"untrusted CA", payload(untrusted), respond(untrusted), codes.PermissionDenied, "certificate signed by unknown authority"},
		{"forged proof", payload(ev2), respond(forger), codes.PermissionDenied, "challenge response verification failed"},
		{"replayed response", payload(ev2), func([]byte) []byte { return recorded }, codes.PermissionDenied, "challenge response verification failed"},
		{"malformed response", payload(ev2), func([]byte) []byte { return []byte("{") }, codes.InvalidArgument, "unable to unmarshal challenge response"},
		{"malformed payload", []byte("{"), nil, codes.InvalidArgument, "failed to unmarshal data"},
		{"payload too large", make([]byte, x509pop.MaxPayload+1), nil, codes.InvalidArgument, "longer than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.attestStream(t, "x509pop", tt.payload, tt.answer)
			if res.GetSvid() != nil {
				t.Fatalf("an SVID was issued (%v)", err)
			}
			wantStatus(t, err, tt.code, tt.msg)
			if n, err := e.store.CountAgents(testContext(t), store.AgentFilter{}); err != nil || n != 1 {
				t.Fatalf("%d agents stored (%v), want only the first", n, err)
			}
		})
	}

	// The node attests again (x509pop is re-attestable, as in SPIRE): the
	// record is kept and takes the new SVID, so the previous one is
	// superseded; no second record appears.
	again, err := e.attestStream(t, "x509pop", payload(ev), respond(ev))
	if err != nil {
		t.Fatalf("re-attest: %v", err)
	}
	rec2, err := e.store.GetAgent(testContext(t), spiffeid.RequireFromString(wantID))
	if err != nil {
		t.Fatal(err)
	}
	if again.GetSvid().GetId().GetPath() != rec.Id.Path || rec2.X509SvidSerialNumber == rec.X509SvidSerialNumber || !rec2.CanReattest || len(rec2.Selectors) != 4 {
		t.Fatalf("after re-attestation: record %v (before %v)", rec2, rec)
	}
	if n, err := e.store.CountAgents(testContext(t), store.AgentFilter{}); err != nil || n != 1 {
		t.Fatalf("%d agents stored after re-attestation (%v), want 1", n, err)
	}

	// A banned node cannot come back by attesting again: the refusal names
	// the ban, the record stays banned without a current SVID, and no SVID
	// is issued.
	admin := caller.NewContext(testContext(t), caller.Caller{Kind: caller.Admin, Local: true})
	if _, err := e.svc.BanAgent(admin, &agentv1.BanAgentRequest{Id: rec.Id}); err != nil {
		t.Fatal(err)
	}
	banned, err := e.attestStream(t, "x509pop", payload(ev), respond(ev))
	if banned.GetSvid() != nil {
		t.Fatal("a banned node was issued an SVID by re-attesting")
	}
	wantStatus(t, err, codes.PermissionDenied, "agent is banned")
	if rec3, err := e.store.GetAgent(testContext(t), spiffeid.RequireFromString(wantID)); err != nil || !rec3.Banned || rec3.X509SvidSerialNumber != "" {
		t.Fatalf("after a banned re-attestation: record %v (%v), want banned with no current SVID", rec3, err)
	}

	// Another attestation type is not served: the precise code and the list.
	_, err = e.attestStream(t, "x509pop_typo", payload(ev2), nil)
	wantStatus(t, err, codes.FailedPrecondition, `could not find node attestor type "x509pop_typo" (supported: x509pop)`)
}
