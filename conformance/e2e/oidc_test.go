package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/conformance/tooltest"
	"github.com/signet-id/signet/issuer"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/oidcdiscovery"
	"github.com/signet-id/signet/tlspolicy/tlspolicytest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// httpsClient trusts roots and negotiates only the given groups (nil: Go's
// defaults, X25519MLKEM768 first).
func httpsClient(roots *x509.CertPool, groups []tls.CurveID) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, CurvePreferences: groups},
	}}
}

func bundlePool(s *testServer) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range s.CA().Bundle().X509Authorities() {
		p.AddCert(c)
	}
	return p
}

// handshake dials addr with TLS limited to groups and returns the group
// negotiated.
func handshake(ctx context.Context, addr string, roots *x509.CertPool, groups []tls.CurveID) (tls.CurveID, error) {
	d := &tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: "localhost", CurvePreferences: groups}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().CurveID, nil
}

// TestOIDCDiscoveryWithGoOIDC: a workload's JWT-SVID, fetched from the
// agent's Workload API, verifies with go-oidc against the served discovery
// document (issuer, jwks_uri, keys); another audience, another issuer and
// a token signed by another key are refused. A classical-only client
// (crypto/tls with X25519 alone, and OpenSSL 3.5 s_client -groups X25519)
// completes the handshake, hybrid is preferred, and each handshake is
// counted by group.
func TestOIDCDiscoveryWithGoOIDC(t *testing.T) {
	dir := shortDir(t)
	reg := prometheus.NewRegistry()
	srv := startServerWith(t, dir, func(o *serverOptions) {
		o.registry = reg
		o.oidc = &server.OIDCConfig{Address: "127.0.0.1:0", SetKeyUse: true, LivePath: "/live", ReadyPath: "/ready"}
	})
	issuerURL := srv.OIDCIssuer()
	if !strings.HasPrefix(issuerURL, "https://localhost:") {
		t.Fatalf("issuer %q", issuerURL)
	}
	token := srv.token(t, 600)
	me := spiffeid.RequireFromPath(td, "/workload/me")
	srv.createEntry(t, me, agentIDFor(token), uidSelector(os.Getuid()))
	ag := startAgent(t, srv, dir, token)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var svid *jwtsvid.SVID
	waitFor(t, 30*time.Second, "a JWT-SVID from the Workload API", func() bool {
		var err error
		svid, err = workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "sts.example.com"}, workloadapi.WithAddr("unix://"+ag.socket))
		return err == nil
	})
	raw := svid.Marshal()

	roots := bundlePool(srv)
	octx := oidc.ClientContext(ctx, httpsClient(roots, nil))
	provider, err := oidc.NewProvider(octx, issuerURL)
	if err != nil {
		t.Fatalf("go-oidc discovery: %v", err)
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: "sts.example.com"}).Verify(octx, raw)
	if err != nil {
		t.Fatalf("go-oidc refuses the JWT-SVID: %v", err)
	}
	if idt.Subject != me.String() || idt.Issuer != issuerURL {
		t.Fatalf("verified token: sub %q iss %q", idt.Subject, idt.Issuer)
	}

	// A token with the right issuer and audience, signed by a key the
	// provider does not publish (another CA).
	m, err := ca.New(ca.Config{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := issuer.New(issuer.Config{TrustDomain: td, Authority: m, JWTIssuer: issuerURL})
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := rogue.JWTSVID(issuer.JWTParams{ID: me, Audience: []string{"sts.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	keys := oidc.NewRemoteKeySet(octx, issuerURL+oidcdiscovery.KeysPath)
	for _, tc := range []struct {
		name  string
		v     *oidc.IDTokenVerifier
		token string
		want  string
	}{
		{"wrong audience", provider.Verifier(&oidc.Config{ClientID: "other.example.com"}), raw, "audience"},
		{"wrong issuer", oidc.NewVerifier("https://oidc.other.example", keys, &oidc.Config{ClientID: "sts.example.com", SupportedSigningAlgs: []string{oidc.ES256}}), raw, "different provider"},
		{"unpublished key", provider.Verifier(&oidc.Config{ClientID: "sts.example.com"}), forged, "signature"},
	} {
		if _, err := tc.v.Verify(octx, tc.token); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %s", tc.name, err, tc.want)
		}
	}

	// set_key_use and health.
	hc := httpsClient(roots, nil)
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	getJSON(t, hc, issuerURL+oidcdiscovery.KeysPath, http.StatusOK, &set)
	if len(set.Keys) == 0 {
		t.Fatal("no keys published")
	}
	for _, k := range set.Keys {
		if k["use"] != "sig" || k["alg"] != "ES256" {
			t.Errorf("key %v: want use sig, alg ES256", k)
		}
	}
	var health map[string]bool
	getJSON(t, hc, issuerURL+"/ready", http.StatusOK, &health)
	getJSON(t, hc, issuerURL+"/live", http.StatusOK, &health)

	// Key exchange: hybrid preferred, classical accepted by default.
	addr := srv.OIDCAddr().String()
	for _, tc := range []struct {
		offer []tls.CurveID
		want  tls.CurveID
	}{
		{nil, tls.X25519MLKEM768},
		{[]tls.CurveID{tls.X25519}, tls.X25519},
		{[]tls.CurveID{tls.CurveP256}, tls.CurveP256},
	} {
		got, err := handshake(ctx, addr, roots, tc.offer)
		if err != nil || got != tc.want {
			t.Errorf("client offering %v: %v, negotiated %v, want %v", tc.offer, err, got, tc.want)
		}
	}
	rootFile := filepath.Join(dir, "root.pem")
	var rootPEM []byte
	for _, c := range srv.CA().Bundle().X509Authorities() {
		rootPEM = append(rootPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(rootFile, rootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	out, ok := tooltest.RunOpenSSL(t, "Q\n", "s_client", "-connect", addr, "-servername", "localhost", "-groups", "X25519", "-CAfile", rootFile, "-verify_return_error", "-brief")
	if !ok || !strings.Contains(out, "X25519") || strings.Contains(out, "MLKEM") {
		t.Fatalf("openssl s_client -groups X25519 (a classical client):\n%s", out)
	}
	// curl built on OpenSSL 3.0 (no X25519MLKEM768), the client of the issue.
	if out, ok := runCurl(t, rootFile, issuerURL+oidcdiscovery.DiscoveryPath); !ok || !strings.Contains(out, `"issuer":"`+issuerURL+`"`) {
		t.Fatalf("curl (OpenSSL 3.0) fetching the discovery document:\n%s", out)
	}
	counted := oidcHandshakes(t, reg, "X25519")
	if counted < 2 { // the crypto/tls client and openssl (and curl)
		t.Errorf("signet_server_oidc_tls_handshakes_total{group=X25519} = %v, want >= 2", counted)
	}
	t.Logf("OIDC handshakes by group: X25519MLKEM768 %v, X25519 %v, P-256 %v",
		oidcHandshakes(t, reg, "X25519MLKEM768"), counted, oidcHandshakes(t, reg, "CurveP256"))
}

// oidcHandshakes reads signet_server_oidc_tls_handshakes_total{group}.
func oidcHandshakes(t *testing.T, reg *prometheus.Registry, group string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == "signet_server_oidc_tls_handshakes_total" && l.GetName() == "group" && l.GetValue() == group {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func getJSON(t *testing.T, c *http.Client, url string, want int, v any) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d", url, resp.StatusCode, want)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// TestOIDCRequirePQWithCertFile: with require_pq_key_exchange a
// classical-only client (crypto/tls, OpenSSL 3.5) is refused and a hybrid
// one served; the configured certificate, not the server SVID, is
// presented, so go-oidc trusting only that certificate discovers the
// provider.
func TestOIDCRequirePQWithCertFile(t *testing.T) {
	dir := shortDir(t)
	certFile, keyFile, webRoots := tlspolicytest.WriteSelfSigned(t, dir)
	srv := startServerWith(t, dir, func(o *serverOptions) {
		o.oidc = &server.OIDCConfig{Address: "127.0.0.1:0", RequirePQ: true, CertFile: certFile, KeyFile: keyFile}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr := srv.OIDCAddr().String()
	if got, err := handshake(ctx, addr, webRoots, nil); err != nil || got != tls.X25519MLKEM768 {
		t.Fatalf("hybrid client: %v, negotiated %v", err, got)
	}
	if _, err := handshake(ctx, addr, bundlePool(srv), nil); err == nil {
		t.Fatal("the server SVID was presented instead of serving_cert_file")
	}
	for _, g := range []tls.CurveID{tls.X25519, tls.CurveP256} {
		if got, err := handshake(ctx, addr, webRoots, []tls.CurveID{g}); err == nil {
			t.Errorf("classical client %v accepted with require_pq_key_exchange (negotiated %v)", g, got)
		}
	}
	if out, ok := tooltest.RunOpenSSL(t, "Q\n", "s_client", "-connect", addr, "-servername", "localhost", "-groups", "X25519", "-brief"); ok {
		t.Fatalf("openssl s_client -groups X25519 accepted with require_pq_key_exchange:\n%s", out)
	}
	if out, ok := runCurl(t, certFile, srv.OIDCIssuer()+oidcdiscovery.DiscoveryPath); ok || !strings.Contains(out, "handshake failure") {
		t.Fatalf("curl (OpenSSL 3.0, classical only) with require_pq_key_exchange: want a handshake failure, got\n%s", out)
	}
	octx := oidc.ClientContext(ctx, httpsClient(webRoots, nil))
	if _, err := oidc.NewProvider(octx, srv.OIDCIssuer()); err != nil {
		t.Fatalf("go-oidc discovery over the configured certificate: %v", err)
	}
}

// TestOIDCPlainHTTPBehindProxy: allow_insecure_http serves plain HTTP for a
// TLS-terminating proxy; the published issuer and jwks_uri stay the public
// https URLs, and requests for a host outside domains are refused.
func TestOIDCPlainHTTPBehindProxy(t *testing.T) {
	dir := shortDir(t)
	srv := startServerWith(t, dir, func(o *serverOptions) {
		o.oidc = &server.OIDCConfig{Address: "127.0.0.1:0", InsecureHTTP: true, Domains: []string{"oidc.example.org"}}
	})
	if srv.OIDCIssuer() != "https://oidc.example.org" {
		t.Fatalf("issuer %q, want https://oidc.example.org from domains", srv.OIDCIssuer())
	}
	base := "http://" + srv.OIDCAddr().String()
	get := func(host string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, base+oidcdiscovery.DiscoveryPath, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&doc)
		return resp.StatusCode, doc
	}
	code, doc := get("oidc.example.org") // as the proxy forwards it
	if code != http.StatusOK || doc["issuer"] != "https://oidc.example.org" || doc["jwks_uri"] != "https://oidc.example.org/keys" {
		t.Fatalf("discovery through the proxy: %d %v", code, doc)
	}
	if code, _ := get("attacker.example"); code != http.StatusBadRequest {
		t.Fatalf("host outside domains: %d, want 400", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := handshake(ctx, srv.OIDCAddr().String(), nil, nil); err == nil {
		t.Fatal("a TLS handshake succeeded on the plain HTTP listener")
	}
}

// runCurl fetches url with the system curl trusting caFile and returns its
// output and whether it succeeded. Debian bookworm's curl is built on
// OpenSSL 3.0, which offers no post-quantum group. The test skips without
// curl, except in CI.
func runCurl(t *testing.T, caFile, url string) (string, bool) {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl not found")
		}
		t.Skip("curl not found")
	}
	out, err := exec.Command(curl, "-sS", "--max-time", "20", "--cacert", caFile, url).CombinedOutput()
	return string(out), err == nil
}
