package trustdomain

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/etcdserver/etcdtest"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var testEtcd *etcdserver.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &testEtcd) }

var tds etcdtest.TrustDomains

// newService is the service over a real store and a real refresher.
func newService(t *testing.T) (*Service, *store.Store, spiffeid.TrustDomain) {
	t.Helper()
	td := tds.Next(t)
	st, err := store.New(testEtcd.Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(etcdtest.Context(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r, err := federation.New(federation.Config{TrustDomain: td, Store: st, NotFound: store.ErrNotFound, FetchTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{TrustDomain: td, Store: st, Refresher: r}), st, td
}

func caDER(t *testing.T, td string) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://" + td)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: td}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, URIs: []*url.URL{u}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func spiffeRel(td, url, id string) *types.FederationRelationship {
	return &types.FederationRelationship{TrustDomain: td, BundleEndpointUrl: url,
		BundleEndpointProfile: &types.FederationRelationship_HttpsSpiffe{HttpsSpiffe: &types.HTTPSSPIFFEProfile{EndpointSpiffeId: id}}}
}

func webRel(td, url string) *types.FederationRelationship {
	return &types.FederationRelationship{TrustDomain: td, BundleEndpointUrl: url,
		BundleEndpointProfile: &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}}
}

// TestBatchCreateValidation: each malformed relationship gets its own
// InvalidArgument (or AlreadyExists) status naming the problem, as
// SPIRE's; valid ones in the same batch are created.
func TestBatchCreateValidation(t *testing.T) {
	s, st, own := newService(t)
	ctx := etcdtest.Context(t)
	bundle := &types.Bundle{TrustDomain: "b.test", X509Authorities: []*types.X509Certificate{{Asn1: caDER(t, "b.test")}}}
	withBundle := spiffeRel("b.test", "https://b.test:8443", "spiffe://b.test/spire/server")
	withBundle.TrustDomainBundle = bundle
	mismatch := webRel("c.test", "https://c.test")
	mismatch.TrustDomainBundle = &types.Bundle{TrustDomain: "d.test", X509Authorities: bundle.X509Authorities}
	badBundle := webRel("c.test", "https://c.test")
	badBundle.TrustDomainBundle = &types.Bundle{TrustDomain: "c.test", X509Authorities: []*types.X509Certificate{{Asn1: []byte("not DER")}}}
	cases := []struct {
		in   *types.FederationRelationship
		code codes.Code
		msg  string
	}{
		{webRel("a.test", "https://a.test/bundle"), codes.OK, ""},
		{withBundle, codes.OK, ""},
		{webRel("a.test", "https://a.test/bundle"), codes.AlreadyExists, "already exists"},
		{webRel(own.Name(), "https://own"), codes.InvalidArgument, "server trust domain"},
		{webRel("Bad Name", "https://x"), codes.InvalidArgument, "failed to parse trust domain"},
		{webRel("c.test", "http://c.test"), codes.InvalidArgument, "https scheme"},
		{webRel("c.test", "https://"), codes.InvalidArgument, "must specify the host"},
		{webRel("c.test", "https://u:p@c.test"), codes.InvalidArgument, "user info"},
		{webRel("c.test", "://"), codes.InvalidArgument, "failed to parse bundle endpoint URL"},
		{spiffeRel("c.test", "https://c.test", "not an id"), codes.InvalidArgument, "endpoint SPIFFE ID"},
		{&types.FederationRelationship{TrustDomain: "c.test", BundleEndpointUrl: "https://c.test"}, codes.InvalidArgument, "unsupported bundle endpoint profile"},
		{&types.FederationRelationship{TrustDomain: "c.test", BundleEndpointUrl: "https://c.test", BundleEndpointProfile: &types.FederationRelationship_HttpsSpiffe{}}, codes.InvalidArgument, "HttpsSpiffe"},
		{mismatch, codes.InvalidArgument, "must match the trust domain"},
		{badBundle, codes.InvalidArgument, "failed to parse bundle"},
		{nil, codes.InvalidArgument, "missing federation relationship"},
	}
	req := &trustdomainv1.BatchCreateFederationRelationshipRequest{}
	for _, c := range cases {
		req.FederationRelationships = append(req.FederationRelationships, c.in)
	}
	resp, err := s.BatchCreateFederationRelationship(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		r := resp.Results[i]
		if got := codes.Code(r.Status.Code); got != c.code || !strings.Contains(r.Status.Message, c.msg) {
			t.Errorf("item %d: %v %q, want %v containing %q", i, got, r.Status.Message, c.code, c.msg)
		}
	}
	// The trust domain bundle was stored as the federated bundle.
	if b, err := st.GetBundle(ctx, spiffeid.RequireTrustDomainFromString("b.test")); err != nil || len(b.X509Authorities) != 1 {
		t.Fatalf("bundle of b.test: %v %v", b, err)
	}
	got, err := s.GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: "b.test"})
	if err != nil || got.TrustDomainBundle == nil || got.GetHttpsSpiffe().GetEndpointSpiffeId() != "spiffe://b.test/spire/server" {
		t.Fatalf("Get b.test = %v, %v", got, err)
	}
}

func code(err error) codes.Code { return status.Code(err) }

// TestGetListUpdateDelete covers the other calls' statuses and masks.
func TestGetListUpdateDelete(t *testing.T) {
	s, _, _ := newService(t)
	ctx := etcdtest.Context(t)
	var rels []*types.FederationRelationship
	for _, td := range []string{"e.test", "a.test", "c.test", "b.test", "d.test"} {
		rels = append(rels, webRel(td, "https://"+td))
	}
	if _, err := s.BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{FederationRelationships: rels}); err != nil {
		t.Fatal(err)
	}

	if _, err := s.GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: "zz.test"}); code(err) != codes.NotFound {
		t.Fatalf("Get unknown: %v", err)
	}
	if _, err := s.GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: "Bad Name"}); code(err) != codes.InvalidArgument {
		t.Fatalf("Get bad name: %v", err)
	}
	masked, err := s.GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: "a.test", OutputMask: &types.FederationRelationshipMask{}})
	if err != nil || masked.BundleEndpointUrl != "" || masked.BundleEndpointProfile != nil || masked.TrustDomain != "a.test" {
		t.Fatalf("Get with empty mask = %v, %v", masked, err)
	}

	var seen []string
	token := ""
	for range 10 {
		r, err := s.ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.FederationRelationships) > 2 {
			t.Fatalf("page of %d, size 2", len(r.FederationRelationships))
		}
		for _, fr := range r.FederationRelationships {
			seen = append(seen, fr.TrustDomain)
		}
		if token = r.NextPageToken; token == "" {
			break
		}
	}
	if strings.Join(seen, ",") != "a.test,b.test,c.test,d.test,e.test" {
		t.Fatalf("listed %v", seen)
	}
	if _, err := s.ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{PageSize: 1, PageToken: "x/y"}); code(err) != codes.InvalidArgument {
		t.Fatalf("List with a malformed token: %v", err)
	}

	upd, err := s.BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{
		FederationRelationships: []*types.FederationRelationship{
			spiffeRel("a.test", "https://a.test:9443", "spiffe://a.test/spire/server"),
			{TrustDomain: "b.test", BundleEndpointUrl: "https://b.test:1"},
			webRel("zz.test", "https://zz.test"),
			webRel("c.test", "ftp://c.test"),
		},
		InputMask: nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []codes.Code{codes.OK, codes.InvalidArgument, codes.NotFound, codes.InvalidArgument}
	for i, w := range want {
		if got := codes.Code(upd.Results[i].Status.Code); got != w {
			t.Errorf("update item %d: %v %q, want %v", i, got, upd.Results[i].Status.Message, w)
		}
	}
	// With an input mask only the URL changes; the profile is kept. Every
	// field is validated whatever the mask, as SPIRE does.
	upd, err = s.BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{
		FederationRelationships: []*types.FederationRelationship{{TrustDomain: "b.test", BundleEndpointUrl: "https://b.test:2"}},
		InputMask:               &types.FederationRelationshipMask{BundleEndpointUrl: true},
	})
	if err != nil || codes.Code(upd.Results[0].Status.Code) != codes.InvalidArgument {
		t.Fatalf("masked update without a profile: %v %v", upd, err)
	}
	upd, err = s.BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{
		FederationRelationships: []*types.FederationRelationship{spiffeRel("b.test", "https://b.test:2", "spiffe://b.test/x")},
		InputMask:               &types.FederationRelationshipMask{BundleEndpointUrl: true},
	})
	if err != nil || codes.Code(upd.Results[0].Status.Code) != codes.OK {
		t.Fatalf("masked update: %v %v", upd, err)
	}
	b, _ := s.GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: "b.test"})
	if b.BundleEndpointUrl != "https://b.test:2" || b.GetHttpsWeb() == nil {
		t.Fatalf("after masked update: %v", b)
	}

	del, err := s.BatchDeleteFederationRelationship(ctx, &trustdomainv1.BatchDeleteFederationRelationshipRequest{TrustDomains: []string{"a.test", "a.test", "", "Bad Name"}})
	if err != nil {
		t.Fatal(err)
	}
	want = []codes.Code{codes.OK, codes.NotFound, codes.InvalidArgument, codes.InvalidArgument}
	for i, w := range want {
		if got := codes.Code(del.Results[i].Status.Code); got != w {
			t.Errorf("delete item %d: %v %q, want %v", i, got, del.Results[i].Status.Message, w)
		}
	}
}

// TestRefreshBundleStatuses: RefreshBundle names an unknown trust domain
// NotFound and returns the fetch's failure as Internal with its cause.
func TestRefreshBundleStatuses(t *testing.T) {
	s, _, _ := newService(t)
	ctx := context.Background()
	if _, err := s.RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: "Bad Name"}); code(err) != codes.InvalidArgument {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := s.RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: "nobody.test"}); code(err) != codes.NotFound {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := s.BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{
		FederationRelationships: []*types.FederationRelationship{spiffeRel("f.test", "https://127.0.0.1:1", "spiffe://f.test/spire/server")},
	}); err != nil {
		t.Fatal(err)
	}
	_, err := s.RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: "f.test"})
	if code(err) != codes.Internal || !strings.Contains(err.Error(), "no X.509 authorities of \"f.test\"") {
		t.Fatalf("refresh without the endpoint's bundle: %v", err)
	}
}
