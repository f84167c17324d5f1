package e2e

import (
	"context"
	"crypto"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/conformance/svidspec"
	"github.com/signet-id/signet/conformance/tooltest"
	"github.com/signet-id/signet/pq/altsig"
	pqjwt "github.com/signet-id/signet/pq/jwt"
	"github.com/signet-id/signet/pq/verify"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// TestHybridProfileEndToEnd serves hybrid SVIDs through a real agent to an
// unmodified go-spiffe client, then checks them with PQ-aware verifiers:
// Signet's and OpenSSL 3.5's.
func TestHybridProfileEndToEnd(t *testing.T) {
	dir := shortDir(t)
	srv := startServerWith(t, dir, func(o *serverOptions) { o.profile = ca.ProfileHybrid })
	token := srv.token(t, 600)
	me := spiffeid.RequireFromPath(td, "/hybrid")
	srv.createEntry(t, me, agentIDFor(token), uidSelector(os.Getuid()))
	ag := startAgent(t, srv, dir, token)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr := workloadapi.WithAddr("unix://" + ag.socket)
	client, err := workloadapi.New(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	x, err := fetchX509(ctx, client)
	if err != nil {
		t.Fatalf("unmodified go-spiffe fetch: %v", err)
	}
	svid := x.DefaultSVID()
	b, err := x.Bundles.GetX509BundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, b); err != nil {
		t.Fatalf("go-spiffe rejects the hybrid chain: %v", err)
	}
	if err := svidspec.CheckX509SVID(svid.Certificates); err != nil {
		t.Fatal(err)
	}
	if !altsig.HasAlt(svid.Certificates[0]) || !altsig.HasAlt(b.X509Authorities()[0]) {
		t.Fatal("served certificates lack the alternative-signature extensions")
	}
	res, err := verify.VerifyX509(svid.Certificates, b.X509Authorities(), verify.Options{RequirePQ: true})
	if err != nil {
		t.Fatalf("PQ-aware verification of the served chain: %v", err)
	}
	if res.Profile != verify.Hybrid {
		t.Fatalf("profile %v", res.Profile)
	}

	// JWT-SVID: go-spiffe validates the ES256 part; Signet's verifier
	// requires the ML-DSA claim too.
	jwt, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"}, addr)
	if err != nil {
		t.Fatalf("go-spiffe JWT fetch: %v", err)
	}
	if _, err := workloadapi.ValidateJWTSVID(ctx, jwt.Marshal(), "db", addr); err != nil {
		t.Fatalf("go-spiffe validate: %v", err)
	}
	ks := pqjwt.KeySet{Classic: map[string]crypto.PublicKey{}, PQ: srv.CA().MLDSAJWTKeys()}
	for kid, k := range srv.CA().Bundle().JWTAuthorities() {
		ks.Classic[kid] = k
	}
	if _, err := pqjwt.Verify(jwt.Marshal(), ks, pqjwt.VerifyOptions{RequirePQ: true, Audience: []string{"db"}}); err != nil {
		t.Fatalf("PQ-aware JWT verification: %v", err)
	}

	// OpenSSL 3.5 accepts the served hybrid chain, and negotiates
	// X25519MLKEM768 with the server's agent listener.
	files := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var rootPEM, leafPEM []byte
	for _, c := range b.X509Authorities() {
		rootPEM = append(rootPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	leafPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: svid.Certificates[0].Raw})
	rootFile, leafFile := write("root.pem", rootPEM), write("leaf.pem", leafPEM)
	if out, ok := tooltest.RunOpenSSL(t, "", "verify", "-CAfile", rootFile, "-purpose", "any", leafFile); !ok {
		t.Fatalf("openssl verify rejects the hybrid chain:\n%s", out)
	}
	out, ok := tooltest.RunOpenSSL(t, "Q\n", "s_client", "-connect", srv.AgentAddr().String(), "-groups", "X25519MLKEM768", "-tls1_3", "-CAfile", rootFile, "-brief")
	if !ok || !strings.Contains(out, "X25519MLKEM768") {
		t.Fatalf("openssl s_client with X25519MLKEM768:\n%s", out)
	}
	if out, ok := tooltest.RunOpenSSL(t, "Q\n", "s_client", "-connect", srv.AgentAddr().String(), "-groups", "X25519", "-tls1_3", "-brief"); ok {
		t.Fatalf("openssl s_client with classical X25519 was accepted:\n%s", out)
	}
}
