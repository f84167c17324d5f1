package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	auditv1 "github.com/signet-id/signet/proto/signet/audit/v1"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// downstreamCallers creates a downstream entry, an ordinary workload entry
// and an admin entry, and returns the client connections of the agent
// listener presenting each one's SVID and an attested agent's.
type downstreamCallers struct {
	downstream, workload, admin, agent *grpc.ClientConn
}

func newDownstreamCallers(t *testing.T, s *testServer) downstreamCallers {
	t.Helper()
	parent := protoID(spiffeid.RequireFromPath(td, "/spire/server"))
	sel := []*types.Selector{{Type: "unix", Value: "uid:0"}}
	ds := spiffeid.RequireFromPath(td, "/nested/spire-server")
	wl := spiffeid.RequireFromPath(td, "/workload/plain")
	adm := spiffeid.RequireFromPath(td, "/ops/admin")
	resp, err := entryv1.NewEntryClient(s.admin).BatchCreateEntry(testContext(t), &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{
		{SpiffeId: protoID(ds), ParentId: parent, Selectors: sel, Downstream: true, X509SvidTtl: 1200},
		{SpiffeId: protoID(wl), ParentId: parent, Selectors: sel},
		{SpiffeId: protoID(adm), ParentId: parent, Selectors: sel, Admin: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Results {
		if codes.Code(r.Status.Code) != codes.OK {
			t.Fatalf("create entry: %v", r.Status)
		}
	}
	_, agentCert := s.attest(t)
	return downstreamCallers{
		downstream: s.dial(t, s.mint(t, ds)), workload: s.dial(t, s.mint(t, wl)),
		admin: s.dial(t, s.mint(t, adm)), agent: s.dial(t, agentCert),
	}
}

func caCSR(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, csr
}

// TestNewDownstreamX509CA: the X509-SVID of a downstream entry gets its
// CSR signed as an intermediate CA of the trust domain, with the TTL rules
// of SPIRE; every other caller (an ordinary workload, an agent, an admin
// SVID, the admin socket) is refused with PermissionDenied, and bad
// requests with InvalidArgument.
func TestNewDownstreamX509CA(t *testing.T) {
	s := startServer(t)
	c := newDownstreamCallers(t, s)
	ctx := testContext(t)
	active, _ := s.CA().X509Authority()
	key, csr := caCSR(t)
	var serials []string

	for _, tt := range []struct {
		name     string
		ttl      int32
		wantLife time.Duration // NotAfter - NotBefore; 0: capped at the active CA
	}{
		{"preferred ttl", 600, 600*time.Second + 10*time.Second},
		{"entry ttl without preferred ttl", 0, 1200*time.Second + 10*time.Second},
		{"preferred ttl past the active CA", 10 * 365 * 24 * 3600, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := svidv1.NewSVIDClient(c.downstream).NewDownstreamX509CA(ctx, &svidv1.NewDownstreamX509CARequest{Csr: csr, PreferredTtl: tt.ttl})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.CaCertChain) != 1 {
				t.Fatalf("ca_cert_chain has %d certificates, want the new CA only (Signet's CA is the root)", len(resp.CaCertChain))
			}
			cert, err := x509.ParseCertificate(resp.CaCertChain[0])
			if err != nil {
				t.Fatal(err)
			}
			if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
				t.Fatalf("downstream CA: IsCA %v, key usage %v", cert.IsCA, cert.KeyUsage)
			}
			if len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://example.org" {
				t.Fatalf("downstream CA URIs %v, want the trust domain ID", cert.URIs)
			}
			serials = append(serials, cert.SerialNumber.String())
			if !key.PublicKey.Equal(cert.PublicKey) {
				t.Fatal("downstream CA is not for the CSR's key")
			}
			if err := cert.CheckSignatureFrom(active); err != nil {
				t.Fatalf("downstream CA not signed by the active CA: %v", err)
			}
			if len(resp.X509Authorities) != len(s.CA().Bundle().X509Authorities()) {
				t.Fatalf("x509_authorities: %d, want the bundle's %d", len(resp.X509Authorities), len(s.CA().Bundle().X509Authorities()))
			}
			if tt.wantLife == 0 {
				if !cert.NotAfter.Equal(active.NotAfter) {
					t.Fatalf("NotAfter %v, want the active CA's %v", cert.NotAfter, active.NotAfter)
				}
			} else if life := cert.NotAfter.Sub(cert.NotBefore); life != tt.wantLife {
				t.Fatalf("lifetime %v, want %v", life, tt.wantLife)
			}
		})
	}
	// Each signing is in the rotation event log, by the downstream caller
	// (the log is written asynchronously: poll, bounded).
	var logged map[string]string
	for i := 0; i < 100; i++ {
		if logged = downstreamEvents(t, s); len(logged) >= len(serials) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, serial := range serials {
		if logged[serial] != "spiffe://example.org/nested/spire-server" {
			t.Fatalf("downstream CA %s: event log actor %q, want the downstream caller (events %v)", serial, logged[serial], logged)
		}
	}

	for _, tt := range []struct {
		name string
		conn *grpc.ClientConn
		req  *svidv1.NewDownstreamX509CARequest
		code codes.Code
		msg  string
	}{
		{"missing CSR", c.downstream, &svidv1.NewDownstreamX509CARequest{}, codes.InvalidArgument, "missing CSR"},
		{"malformed CSR", c.downstream, &svidv1.NewDownstreamX509CARequest{Csr: []byte("not a CSR")}, codes.InvalidArgument, "invalid CSR"},
		{"CSR with a bad signature", c.downstream, &svidv1.NewDownstreamX509CARequest{Csr: corrupt(csr)}, codes.InvalidArgument, "invalid CSR"},
		{"negative preferred ttl", c.downstream, &svidv1.NewDownstreamX509CARequest{Csr: csr, PreferredTtl: -1}, codes.InvalidArgument, "preferred_ttl"},
		{"workload SVID of a non-downstream entry", c.workload, &svidv1.NewDownstreamX509CARequest{Csr: csr}, codes.PermissionDenied, "caller is unauthenticated"},
		{"agent SVID", c.agent, &svidv1.NewDownstreamX509CARequest{Csr: csr}, codes.PermissionDenied, "caller is agent"},
		{"admin entry SVID", c.admin, &svidv1.NewDownstreamX509CARequest{Csr: csr}, codes.PermissionDenied, "caller is admin"},
		{"admin socket", s.admin, &svidv1.NewDownstreamX509CARequest{Csr: csr}, codes.PermissionDenied, "caller is admin"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := svidv1.NewSVIDClient(tt.conn).NewDownstreamX509CA(ctx, tt.req)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("got %v, want %v saying %q", err, tt.code, tt.msg)
			}
		})
	}
}

// downstreamEvents returns the actors of the svid.issued events marked
// downstream, by serial.
func downstreamEvents(t *testing.T, s *testServer) map[string]string {
	t.Helper()
	stream, err := auditv1.NewAuditClient(s.admin).Tail(testContext(t), &auditv1.TailRequest{Kinds: []string{string(eventlog.KindSVIDIssued)}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for {
		rec, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		r, err := eventlog.ParseRecord(rec.Json)
		if err != nil {
			t.Fatal(err)
		}
		if r.Details["downstream"] == "true" && r.Subject == "spiffe://example.org" {
			out[r.Serial] = r.Actor
		}
	}
}

// corrupt flips a bit of the CSR's signature (its last byte).
func corrupt(csr []byte) []byte {
	out := append([]byte(nil), csr...)
	out[len(out)-1] ^= 1
	return out
}

// TestPublishJWTAuthority: a downstream server's JWT authority joins the
// trust domain's bundle and the response lists the bundle's JWT
// authorities; invalid keys are refused with InvalidArgument, a key ID
// already used by another key with AlreadyExists, non-downstream callers
// with PermissionDenied.
func TestPublishJWTAuthority(t *testing.T) {
	s := startServer(t)
	c := newDownstreamCallers(t, s)
	ctx := testContext(t)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	resp, err := bundlev1.NewBundleClient(c.downstream).PublishJWTAuthority(ctx, &bundlev1.PublishJWTAuthorityRequest{
		JwtAuthority: &types.JWTKey{KeyId: "downstream-1", PublicKey: pub, ExpiresAt: exp}})
	if err != nil {
		t.Fatal(err)
	}
	ownKID, _ := s.CA().JWTKey()
	var sawOwn, sawPublished bool
	for _, a := range resp.JwtAuthorities {
		sawOwn = sawOwn || a.KeyId == ownKID
		sawPublished = sawPublished || (a.KeyId == "downstream-1" && a.ExpiresAt == exp)
	}
	if !sawOwn || !sawPublished {
		t.Fatalf("jwt_authorities %v: own key %v, published key %v", resp.JwtAuthorities, sawOwn, sawPublished)
	}
	if got, ok := s.CA().Bundle().FindJWTAuthority("downstream-1"); !ok || !k.PublicKey.Equal(got) {
		t.Fatal("the published JWT authority is not in the trust domain's bundle")
	}
	// Publishing the same key again is idempotent.
	if _, err := bundlev1.NewBundleClient(c.downstream).PublishJWTAuthority(ctx, &bundlev1.PublishJWTAuthorityRequest{
		JwtAuthority: &types.JWTKey{KeyId: "downstream-1", PublicKey: pub, ExpiresAt: exp}}); err != nil {
		t.Fatalf("publish again: %v", err)
	}

	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherPub, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	for _, tt := range []struct {
		name string
		conn *grpc.ClientConn
		key  *types.JWTKey
		code codes.Code
		msg  string
	}{
		{"missing authority", c.downstream, nil, codes.InvalidArgument, "missing JWT authority"},
		{"missing key ID", c.downstream, &types.JWTKey{PublicKey: pub, ExpiresAt: exp}, codes.InvalidArgument, "missing key ID"},
		{"missing public key", c.downstream, &types.JWTKey{KeyId: "k", ExpiresAt: exp}, codes.InvalidArgument, "missing public key"},
		{"malformed public key", c.downstream, &types.JWTKey{KeyId: "k", PublicKey: []byte("junk"), ExpiresAt: exp}, codes.InvalidArgument, "public key"},
		{"no expiry", c.downstream, &types.JWTKey{KeyId: "k", PublicKey: pub}, codes.InvalidArgument, "missing expiry"},
		{"expired", c.downstream, &types.JWTKey{KeyId: "k", PublicKey: pub, ExpiresAt: time.Now().Add(-time.Minute).Unix()}, codes.InvalidArgument, "expired"},
		{"key ID of another published key", c.downstream, &types.JWTKey{KeyId: "downstream-1", PublicKey: otherPub, ExpiresAt: exp}, codes.AlreadyExists, "another public key"},
		{"key ID of Signet's own key", c.downstream, &types.JWTKey{KeyId: ownKID, PublicKey: otherPub, ExpiresAt: exp}, codes.AlreadyExists, "another public key"},
		{"workload SVID", c.workload, &types.JWTKey{KeyId: "k", PublicKey: pub, ExpiresAt: exp}, codes.PermissionDenied, "caller is unauthenticated"},
		{"agent SVID", c.agent, &types.JWTKey{KeyId: "k", PublicKey: pub, ExpiresAt: exp}, codes.PermissionDenied, "caller is agent"},
		{"admin socket", s.admin, &types.JWTKey{KeyId: "k", PublicKey: pub, ExpiresAt: exp}, codes.PermissionDenied, "caller is admin"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bundlev1.NewBundleClient(tt.conn).PublishJWTAuthority(ctx, &bundlev1.PublishJWTAuthorityRequest{JwtAuthority: tt.key})
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("got %v, want %v saying %q", err, tt.code, tt.msg)
			}
		})
	}
	if _, ok := s.CA().Bundle().FindJWTAuthority("k"); ok {
		t.Fatal("a refused JWT authority reached the bundle")
	}
}
