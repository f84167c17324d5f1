package sds_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/agent/sds"
	"github.com/signet-id/signet/pq/pqtest"
	"github.com/signet-id/signet/pq/verify"
)

// fetch returns the secrets named, from FetchSecrets.
func fetch(t *testing.T, f *fixture, names ...string) map[string]*tlsv3.Secret {
	t.Helper()
	resp, err := f.client().FetchSecrets(testContext(t), &discoveryv3.DiscoveryRequest{Node: envoyNode(nil), ResourceNames: names, TypeUrl: sds.SecretTypeURL})
	if err != nil {
		t.Fatal(err)
	}
	return decoded(t, resp)
}

// sdsPeer is a crypto/tls peer configured from SDS secrets only: its
// certificate from a tls_certificate secret, its trust from the trust
// domains of a SPIFFE validator config secret.
func sdsPeer(t *testing.T, cert, validation *tlsv3.Secret) (*x509svid.SVID, *x509bundle.Set) {
	t.Helper()
	tc := cert.GetTlsCertificate()
	svid, err := x509svid.Parse(tc.CertificateChain.GetInlineBytes(), tc.PrivateKey.GetInlineBytes())
	if err != nil {
		t.Fatalf("%s: %v", cert.Name, err)
	}
	set := x509bundle.NewSet()
	for name, roots := range validatorDomains(t, validation) {
		set.Add(x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(name), roots))
	}
	return svid, set
}

// handshake runs a TLS handshake over a pipe and returns both errors.
func handshake(t *testing.T, server, client *tls.Config) (error, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srvErr := make(chan error, 1)
	go func() {
		s := tls.Server(a, server)
		err := s.HandshakeContext(ctx)
		a.Close()
		srvErr <- err
	}()
	c := tls.Client(b, client)
	cliErr := c.HandshakeContext(ctx)
	b.Close()
	return <-srvErr, cliErr
}

// TestMTLSFromSDSOnly: two workloads build their TLS configurations from
// SDS secrets alone (their SVID by SPIFFE ID; ROOTCA for one, ALL for the
// other) and complete an mTLS handshake, each verifying the other's
// SPIFFE ID with the validator config's trust domain bundle. Authorizing
// another ID makes the handshake fail.
func TestMTLSFromSDSOnly(t *testing.T) {
	me := os.Geteuid()
	const frontend, backend = "spiffe://example.org/frontend", "spiffe://example.org/backend"
	f := serve(t, sds.Settings{}, entry("e1", "/frontend", me, partner.Name()), entry("e2", "/backend", me))

	fs := fetch(t, f, frontend, "ALL")
	bs := fetch(t, f, backend, "ROOTCA")
	fSVID, fTrust := sdsPeer(t, fs[frontend], fs["ALL"])
	bSVID, bTrust := sdsPeer(t, bs[backend], bs["ROOTCA"])

	tests := []struct {
		name       string
		serverWant string // the client ID the backend authorizes
		wantOK     bool
	}{
		{"each authorizes the other", frontend, true},
		{"backend authorizes someone else", "spiffe://example.org/other", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := tlsconfig.MTLSServerConfig(bSVID, bTrust, tlsconfig.AuthorizeID(spiffeid.RequireFromString(tt.serverWant)))
			client := tlsconfig.MTLSClientConfig(fSVID, fTrust, tlsconfig.AuthorizeID(spiffeid.RequireFromString(backend)))
			srvErr, cliErr := handshake(t, server, client)
			if tt.wantOK && (srvErr != nil || cliErr != nil) {
				t.Fatalf("handshake: server %v, client %v", srvErr, cliErr)
			}
			if !tt.wantOK && srvErr == nil {
				t.Fatal("the backend accepted a client it does not authorize")
			}
		})
	}
}

// TestHybridChainServedIntact: a hybrid (ECDSA + ML-DSA alternative
// signature) chain in the cache is served byte for byte, and the chain
// and ROOTCA from SDS verify with post-quantum protection end to end.
func TestHybridChainServedIntact(t *testing.T) {
	chain, err := pqtest.Hybrid(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f := serve(t, sds.Settings{}, entry("h1", "/workload/web", os.Geteuid()))
	f.state.Bundle = spiffebundle.FromX509Authorities(td, []*x509.Certificate{chain.Root.Cert})
	f.state.SVIDs = map[string]*cache.X509SVID{"h1": {Chain: chain.Certs(), Key: chain.Leaf.Key, AltKey: chain.Leaf.AltKey}}
	f.cache.Update(f.state)

	got := fetch(t, f, pqtest.LeafID, "ROOTCA")
	served := got[pqtest.LeafID].GetTlsCertificate().CertificateChain.GetInlineBytes()
	var want []byte
	for _, c := range chain.Certs() {
		want = append(want, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if !bytes.Equal(served, want) {
		t.Fatal("the served chain differs from the cached hybrid chain")
	}
	roots := validatorDomains(t, got["ROOTCA"])[td.Name()]
	res, err := verify.VerifyX509(certs(t, got[pqtest.LeafID].GetTlsCertificate().CertificateChain), roots, verify.Options{RequirePQ: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.PQVerified || res.ID.String() != pqtest.LeafID {
		t.Fatalf("verified %s, PQ %v", res.ID, res.PQVerified)
	}
}
