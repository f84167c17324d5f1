package svid_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/issuer"
	svidapi "github.com/signet-id/signet/server/api/svid"
	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	td     = spiffeid.RequireTrustDomainFromString("example.org")
	agentA = spiffeid.RequireFromPath(td, "/spire/agent/join_token/a")
	agentB = spiffeid.RequireFromPath(td, "/spire/agent/join_token/b")
)

type env struct {
	svc   *svidapi.Service
	store *store.Store
	ca    *ca.Manager
	// entryA and entryB are workload entries parented to agentA and agentB.
	entryA, entryB *types.Entry
}

func testContext(t *testing.T) context.Context {
	// A safety net against hangs, not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func pid(id spiffeid.ID) *types.SPIFFEID {
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
}

// newEnv runs the SVID API on a real store (embedded etcd) holding two
// agents with one entry each, and a real issuer.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := testContext(t)
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	etcd, err := etcdserver.Start(ctx, etcdserver.Config{Dir: filepath.Join(dir, "etcd")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Close() })
	st, err := store.New(etcd.Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m, err := ca.New(ca.Config{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(issuer.Config{TrustDomain: td, Authority: m})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{svc: svidapi.New(svidapi.Config{TrustDomain: td, Store: st, Issuer: iss}), store: st, ca: m}
	for i, a := range []spiffeid.ID{agentA, agentB} {
		if _, err := st.CreateAgent(ctx, &types.Agent{Id: pid(a), AttestationType: "join_token", X509SvidSerialNumber: "1"}); err != nil {
			t.Fatal(err)
		}
		en, err := st.CreateEntry(ctx, &types.Entry{
			SpiffeId:  pid(spiffeid.RequireFromPath(td, "/workload/"+string(rune('a'+i)))),
			ParentId:  pid(a),
			Selectors: []*types.Selector{{Type: "unix", Value: "uid:1000"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			e.entryA = en
		} else {
			e.entryB = en
		}
	}
	return e
}

func as(t *testing.T, c caller.Caller) context.Context {
	return caller.NewContext(testContext(t), c)
}

func csr(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestAgentGetsOnlyItsOwnEntries: agent A obtains an SVID for its entry and
// is refused, per entry, for agent B's.
func TestAgentGetsOnlyItsOwnEntries(t *testing.T) {
	e := newEnv(t)
	ctx := as(t, caller.Caller{Kind: caller.Agent, ID: agentA})
	resp, err := e.svc.BatchNewX509SVID(ctx, &svidv1.BatchNewX509SVIDRequest{Params: []*svidv1.NewX509SVIDParams{
		{EntryId: e.entryA.Id, Csr: csr(t)},
		{EntryId: e.entryB.Id, Csr: csr(t)},
		{EntryId: "no-such-entry", Csr: csr(t)},
		{EntryId: e.entryA.Id, Csr: csr(t)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []codes.Code{codes.OK, codes.NotFound, codes.NotFound, codes.InvalidArgument}
	if len(resp.Results) != len(want) {
		t.Fatalf("%d results, want %d", len(resp.Results), len(want))
	}
	for i, r := range resp.Results {
		if got := codes.Code(r.Status.Code); got != want[i] {
			t.Errorf("result %d: %v %q, want %v", i, got, r.Status.Message, want[i])
		}
		if want[i] != codes.OK && r.Svid != nil {
			t.Errorf("result %d: refused but carries an SVID for %v", i, r.Svid.Id)
		}
	}
	if !strings.Contains(resp.Results[1].Status.Message, "not authorized for this agent") {
		t.Errorf("refusal says %q", resp.Results[1].Status.Message)
	}
	// The SVID issued is the entry's identity, chained to the CA.
	var chain []*x509.Certificate
	for _, der := range resp.Results[0].Svid.CertChain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	id, _, err := x509svid.Verify(chain, e.ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	if id.String() != "spiffe://example.org/workload/a" {
		t.Fatalf("issued SVID for %v, want spiffe://example.org/workload/a", id)
	}

	_, err = e.svc.NewJWTSVID(ctx, &svidv1.NewJWTSVIDRequest{EntryId: e.entryB.Id, Audience: []string{"db"}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("JWT-SVID for another agent's entry: got %v, want NotFound", err)
	}
	jwt, err := e.svc.NewJWTSVID(ctx, &svidv1.NewJWTSVIDRequest{EntryId: e.entryA.Id, Audience: []string{"db"}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwtsvid.ParseAndValidate(jwt.Svid.Token, e.ca.Bundle(), []string{"db"})
	if err != nil {
		t.Fatal(err)
	}
	if tok.ID.String() != "spiffe://example.org/workload/a" {
		t.Fatalf("JWT-SVID for %v", tok.ID)
	}
}

// TestOnlyAgentsAndAdminsGetSVIDs: callers that are not a known agent get
// no SVID from the agent methods, and the admin mint refuses IDs outside
// the trust domain.
func TestOnlyAgentsAndAdminsGetSVIDs(t *testing.T) {
	e := newEnv(t)
	req := &svidv1.BatchNewX509SVIDRequest{Params: []*svidv1.NewX509SVIDParams{{EntryId: e.entryA.Id, Csr: csr(t)}}}
	for _, tt := range []struct {
		name string
		c    *caller.Caller
		code codes.Code
	}{
		{"no caller", nil, codes.PermissionDenied},
		{"admin", &caller.Caller{Kind: caller.Admin, Local: true}, codes.PermissionDenied},
		{"workload SVID", &caller.Caller{Kind: caller.Unauthenticated, ID: spiffeid.RequireFromPath(td, "/workload/a")}, codes.PermissionDenied},
		{"unknown agent", &caller.Caller{Kind: caller.Agent, ID: spiffeid.RequireFromPath(td, "/spire/agent/join_token/gone")}, codes.NotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			if tt.c != nil {
				ctx = caller.NewContext(ctx, *tt.c)
			}
			resp, err := e.svc.BatchNewX509SVID(ctx, req)
			if status.Code(err) != tt.code || resp != nil {
				t.Fatalf("got %v, %v; want %v and no response", resp, err, tt.code)
			}
			_, err = e.svc.NewJWTSVID(ctx, &svidv1.NewJWTSVIDRequest{EntryId: e.entryA.Id, Audience: []string{"db"}})
			if status.Code(err) != tt.code {
				t.Fatalf("NewJWTSVID: got %v, want %v", err, tt.code)
			}
		})
	}

	admin := as(t, caller.Caller{Kind: caller.Admin, Local: true})
	for _, raw := range []string{"spiffe://evil.test/x", "spiffe://example.org"} {
		u, _ := url.Parse(raw)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e.svc.MintX509SVID(admin, &svidv1.MintX509SVIDRequest{Csr: der})
		if status.Code(err) != codes.InvalidArgument || resp != nil {
			t.Fatalf("mint for %s: got %v, want InvalidArgument", raw, err)
		}
	}
}
