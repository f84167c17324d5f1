package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"strconv"
	"strings"
	"testing"
	"time"

	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/tlspolicy/tlspolicytest"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	gofed "github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// dialCurves reports whether a TLS 1.2+ client offering only curves
// completes a handshake with addr.
func dialCurves(addr string, curves []tls.CurveID) error {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, CurvePreferences: curves}) //nolint:gosec // only the key exchange is under test
	if err == nil {
		c.Close()
	}
	return err
}

// TestBundleEndpointSPIFFE: the https_spiffe bundle endpoint serves the
// trust domain's bundle with the configured refresh hint, authenticated
// by the server SVID as go-spiffe's federation client checks it; it keeps
// the server's key exchange policy (post-quantum required by default).
func TestBundleEndpointSPIFFE(t *testing.T) {
	s := startServerWith(t, func(c *server.Config) {
		c.Federation.BundleEndpoint = &server.BundleEndpointConfig{Address: "127.0.0.1:0", Profile: federation.ProfileSPIFFE, RefreshHint: 42 * time.Second}
	})
	url := "https://" + s.BundleEndpointAddr().String()
	own := x509bundle.FromX509Authorities(td, s.CA().Bundle().X509Authorities())
	b, err := gofed.FetchBundle(testContext(t), td, url, gofed.WithSPIFFEAuth(own, spiffeid.RequireFromPath(td, "/spire/server")))
	if err != nil {
		t.Fatal(err)
	}
	if !b.X509Bundle().Equal(s.CA().Bundle().X509Bundle()) {
		t.Fatal("served X.509 authorities differ from the CA's")
	}
	if h, ok := b.RefreshHint(); !ok || h != 42*time.Second {
		t.Fatalf("refresh hint %v, want 42s", h)
	}
	if _, err := gofed.FetchBundle(testContext(t), td, url, gofed.WithSPIFFEAuth(own, spiffeid.RequireFromPath(td, "/not-the-server"))); err == nil {
		t.Fatal("a client expecting another endpoint SPIFFE ID accepted the endpoint")
	}
	if err := dialCurves(s.BundleEndpointAddr().String(), []tls.CurveID{tls.X25519}); err == nil {
		t.Fatal("classical-only key exchange accepted on the https_spiffe endpoint without allow_classical_key_exchange")
	}
}

// TestBundleEndpointWeb: the https_web endpoint serves with the
// configured certificate files, verified by go-spiffe's Web PKI client,
// and accepts classical key exchange so that any Web PKI client can fetch.
func TestBundleEndpointWeb(t *testing.T) {
	certPath, keyPath, roots := tlspolicytest.WriteSelfSigned(t, t.TempDir())
	s := startServerWith(t, func(c *server.Config) {
		c.Federation.BundleEndpoint = &server.BundleEndpointConfig{Address: "127.0.0.1:0", Profile: federation.ProfileWeb, CertFile: certPath, KeyFile: keyPath}
	})
	addr := s.BundleEndpointAddr()
	b, err := gofed.FetchBundle(testContext(t), td, "https://localhost:"+strconv.Itoa(addr.Port), gofed.WithWebPKIRoots(roots))
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := b.RefreshHint(); h != federation.DefaultRefreshHint {
		t.Fatalf("refresh hint %v, want the default %v", h, federation.DefaultRefreshHint)
	}
	for _, curves := range [][]tls.CurveID{{tls.X25519}, {tls.CurveP256}, {tls.X25519MLKEM768}} {
		if err := dialCurves(addr.String(), curves); err != nil {
			t.Fatalf("https_web endpoint refused a client offering %v: %v", curves, err)
		}
	}
}

// TestBundleEndpointWebBadFiles: a missing serving certificate stops the
// start with the file named.
func TestBundleEndpointWebBadFiles(t *testing.T) {
	srv, err := server.New(server.Config{TrustDomain: td, DataDir: t.TempDir(), BindAddress: "127.0.0.1:0",
		Federation: server.FederationConfig{BundleEndpoint: &server.BundleEndpointConfig{Address: "127.0.0.1:0", Profile: federation.ProfileWeb, CertFile: "/nonexistent/be.crt", KeyFile: "/nonexistent/be.key"}}})
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Run(testContext(t))
	if err == nil || !containsAll(err.Error(), "serving_cert_file", "/nonexistent/be.crt") {
		t.Fatalf("Run = %v, want a refusal naming the certificate file", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestStaticFederationBetweenSignetServers: server A federates with
// server B through a static relationship (the configuration file's
// federates_with) over https_spiffe; a CA rotation on B reaches A's
// federated bundle at B's refresh hint. Static relationships are not
// listed by the TrustDomain API but can be refreshed through it.
func TestStaticFederationBetweenSignetServers(t *testing.T) {
	bTD := spiffeid.RequireTrustDomainFromString("b.test")
	b := startServerWith(t, func(c *server.Config) {
		c.TrustDomain = bTD
		c.Federation.BundleEndpoint = &server.BundleEndpointConfig{Address: "127.0.0.1:0", RefreshHint: time.Second}
	})
	a := startServerWith(t, func(c *server.Config) {
		c.Federation = server.FederationConfig{
			FederatesWith: []federation.Relationship{{TrustDomain: bTD, URL: "https://" + b.BundleEndpointAddr().String(),
				Profile: federation.ProfileSPIFFE, EndpointID: spiffeid.RequireFromPath(bTD, "/spire/server"), Static: true}},
			MinRefresh: time.Second, Retry: time.Second, ReloadInterval: time.Second,
		}
	})
	ctx := testContext(t)
	seed, err := bundlecodec.ToProto(b.CA().Bundle())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bundlev1.NewBundleClient(a.admin).BatchSetFederatedBundle(ctx, &bundlev1.BatchSetFederatedBundleRequest{Bundle: []*types.Bundle{seed}}); err != nil {
		t.Fatal(err)
	}
	tdc := trustdomainv1.NewTrustDomainClient(a.admin)
	if _, err := tdc.RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: bTD.Name()}); err != nil {
		t.Fatalf("RefreshBundle of a static relationship: %v", err)
	}
	if l, err := tdc.ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{}); err != nil || len(l.FederationRelationships) != 0 {
		t.Fatalf("static relationships listed: %v %v", l, err)
	}
	prep, err := localauthorityv1.NewLocalAuthorityClient(b.admin).PrepareX509Authority(ctx, &localauthorityv1.PrepareX509AuthorityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := prep.PreparedAuthority.AuthorityId
	for ctx.Err() == nil {
		fb, err := bundlev1.NewBundleClient(a.admin).GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: bTD.Name()})
		if err == nil {
			for _, x := range fb.X509Authorities {
				if c, err := x509.ParseCertificate(x.Asn1); err == nil && ca.X509AuthorityID(c) == want {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("B's prepared authority never reached A's federated bundle")
}
