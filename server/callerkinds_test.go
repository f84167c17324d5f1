package server_test

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
)

// mint returns an X.509-SVID for id, minted over the admin socket, as a
// TLS client certificate.
func (s *testServer) mint(t *testing.T, id spiffeid.ID) *tls.Certificate {
	t.Helper()
	key, _ := newCSR(t)
	u, _ := url.Parse(id.String())
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := svidv1.NewSVIDClient(s.admin).MintX509SVID(testContext(t), &svidv1.MintX509SVIDRequest{Csr: csr})
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{PrivateKey: key, Certificate: resp.Svid.CertChain}
}

// TestCallerKindFromTLSPeer: the agent listener tells callers apart by
// their client certificate, and each kind reaches only its methods.
func TestCallerKindFromTLSPeer(t *testing.T) {
	s := startServer(t)
	ctx := testContext(t)
	_, agentCert := s.attest(t)
	adminID := spiffeid.RequireFromPath(td, "/ops/admin")
	workloadID := spiffeid.RequireFromPath(td, "/workload/web")
	// An entry marked admin, and an ordinary one.
	resp, err := entryv1.NewEntryClient(s.admin).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{{
		SpiffeId:  protoID(adminID),
		ParentId:  protoID(spiffeid.RequireFromPath(td, "/spire/server")),
		Selectors: []*types.Selector{{Type: "unix", Value: "uid:0"}},
		Admin:     true,
	}, {
		SpiffeId:  protoID(workloadID),
		ParentId:  protoID(spiffeid.RequireFromPath(td, "/spire/server")),
		Selectors: []*types.Selector{{Type: "unix", Value: "uid:0"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Results {
		if codes.Code(r.Status.Code) != codes.OK {
			t.Fatalf("create entry: %v", r.Status)
		}
	}

	adminCall := func(cert *tls.Certificate) error {
		_, err := agentv1.NewAgentClient(s.dial(t, cert)).CountAgents(ctx, &agentv1.CountAgentsRequest{})
		return err
	}
	tests := []struct {
		name               string
		cert               *tls.Certificate
		admin, asAnAgent   codes.Code
		adminMsg, agentMsg string
	}{
		// Without a client certificate the listener's limiter refuses certificate-only
		// methods before the access policy runs (server/limits).
		{"no certificate", nil, codes.PermissionDenied, codes.PermissionDenied, "needs an agent or admin client certificate", "needs an agent or admin client certificate"},
		{"agent SVID", agentCert, codes.PermissionDenied, codes.OK, "caller is agent", ""},
		{"workload SVID", s.mint(t, workloadID), codes.PermissionDenied, codes.PermissionDenied, "caller is unauthenticated", "caller is unauthenticated"},
		{"admin entry SVID", s.mint(t, adminID), codes.OK, codes.PermissionDenied, "", "caller is admin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(what string, err error, code codes.Code, msg string) {
				t.Helper()
				if code == codes.OK {
					if err != nil {
						t.Fatalf("%s: %v", what, err)
					}
					return
				}
				wantDenied(t, err, msg)
			}
			check("admin call", adminCall(tt.cert), tt.admin, tt.adminMsg)
			check("agent call", agentCall(ctx, s.dial(t, tt.cert)), tt.asAnAgent, tt.agentMsg)
		})
	}
}
