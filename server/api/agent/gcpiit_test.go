package agent_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/signet-id/signet/attest/gcpiit"
	"github.com/signet-id/signet/attest/gcpiit/gcpiittest"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
)

// TestAttestAgentGCPIIT runs gcp_iit over the real AttestAgent stream and
// store: the agent half asks a metadata server stand-in on loopback for a
// token that a test "Google" key signed, the server half fetches that
// key's certificate from a loopback stand-in of Google's certs URL. The
// agent ID and selectors are SPIRE's; forged, untrusted, expired,
// wrong-audience, foreign-project, malformed and replayed tokens get a
// precise code and store nothing.
func TestAttestAgentGCPIIT(t *testing.T) {
	const project = "signet-test"
	g := gcpiittest.NewGoogle(t, "key-1")
	cfg, err := gcpiit.ConfigFromPluginData(td, gcpiit.ServerPluginData{ProjectIDAllowList: []string{project}, CertsURL: g.CertsURL})
	if err != nil {
		t.Fatal(err)
	}
	a, err := gcpiit.NewAttestor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, a)

	ce := gcpiittest.Instance(project, "europe-west1-b", "node-1", "4242424242424242424")
	host := gcpiittest.NewMetadata(t, g, ce, time.Now)
	ev, err := gcpiit.NewEvidence(gcpiit.AgentPluginData{IdentityTokenHost: host}, nil)
	if err != nil {
		t.Fatal(err)
	}
	good, err := ev.Payload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.attestStream(t, gcpiit.Type, good, nil)
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	wantID := "spiffe://example.org/spire/agent/gcp_iit/signet-test/4242424242424242424"
	if res.GetSvid().GetId().GetPath() != "/spire/agent/gcp_iit/signet-test/4242424242424242424" || res.Reattestable {
		t.Fatalf("result %v, want %s, not reattestable", res, wantID)
	}
	rec, err := e.store.GetAgent(testContext(t), spiffeid.RequireFromString(wantID))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"project-id:signet-test", "zone:europe-west1-b", "instance-name:node-1"}
	if rec.AttestationType != gcpiit.Type || rec.CanReattest || len(rec.Selectors) != len(want) {
		t.Fatalf("agent record %v", rec)
	}
	for i, s := range rec.Selectors {
		if s.Type != gcpiit.Type || s.Value != want[i] {
			t.Fatalf("selector %d = %v, want gcp_iit:%s", i, s, want[i])
		}
	}

	fresh, err := ev.Payload(context.Background()) // a new token, same instance
	if err != nil {
		t.Fatal(err)
	}
	other := gcpiittest.Instance(project, "europe-west1-b", "node-2", "77")
	now := time.Now()
	rogue, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// forged: the signed token's claims swapped for another instance's.
	parts := strings.Split(string(good), ".")
	otherClaims := strings.Split(g.Sign(t, gcpiittest.Claims(other, gcpiit.Audience, now)), ".")[1]
	forged := parts[0] + "." + otherClaims + "." + parts[2]
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
	hsTok, _ := jwt.Signed(hs).Claims(gcpiittest.Claims(other, gcpiit.Audience, now)).Serialize()
	noCE := gcpiittest.Claims(gcpiit.ComputeEngine{}, gcpiit.Audience, now)
	tests := []struct {
		name    string
		payload string
		code    codes.Code
		msg     string
	}{
		{"replayed instance (fresh token)", string(fresh), codes.PermissionDenied, "attestation data has already been used to attest an agent"},
		{"replayed token", string(good), codes.PermissionDenied, "attestation data has already been used to attest an agent"},
		{"forged claims", forged, codes.PermissionDenied, "failed to validate the identity token signature"},
		{"signed by an untrusted key", gcpiittest.SignWith(t, rogue, "key-1", gcpiittest.Claims(other, gcpiit.Audience, now)), codes.PermissionDenied, "failed to validate the identity token signature"},
		{"unknown key ID", gcpiittest.SignWith(t, g.Key, "key-9", gcpiittest.Claims(other, gcpiit.Audience, now)), codes.PermissionDenied, "failed to validate the identity token signature"},
		{"expired", g.Sign(t, gcpiittest.Claims(other, gcpiit.Audience, now.Add(-2*time.Hour))), codes.PermissionDenied, "token is expired"},
		{"not yet valid", g.Sign(t, gcpiittest.Claims(other, gcpiit.Audience, now.Add(time.Hour))), codes.PermissionDenied, "failed to validate the identity token claims"},
		{"wrong audience", g.Sign(t, gcpiittest.Claims(other, "https://vault.example.org", now)), codes.PermissionDenied, "invalid audience claim"},
		{"project not allowed", g.Sign(t, gcpiittest.Claims(gcpiittest.Instance("elsewhere", "z", "n", "1"), gcpiit.Audience, now)), codes.PermissionDenied, `project ID "elsewhere" is not in the allow list`},
		{"no compute_engine claims", g.Sign(t, noCE), codes.PermissionDenied, "not format=full"},
		{"HS256", hsTok, codes.InvalidArgument, "unable to parse the identity token"},
		{"not a JWT", "not.a.jwt", codes.InvalidArgument, "unable to parse the identity token"},
		{"claims not base64", parts[0] + ".!!." + parts[2], codes.InvalidArgument, "unable to parse the identity token"},
		{"header only", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256"}`)), codes.InvalidArgument, "unable to parse the identity token"},
		{"empty payload", "", codes.InvalidArgument, "missing attestation payload"},
		{"payload too large", strings.Repeat("a", gcpiit.MaxPayload+1), codes.InvalidArgument, "longer than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.attestStream(t, gcpiit.Type, []byte(tt.payload), nil)
			if res.GetSvid() != nil {
				t.Fatalf("an SVID was issued (%v)", err)
			}
			wantStatus(t, err, tt.code, tt.msg)
			if n, err := e.store.CountAgents(testContext(t), store.AgentFilter{}); err != nil || n != 1 {
				t.Fatalf("%d agents stored (%v), want only the first", n, err)
			}
		})
	}
}
