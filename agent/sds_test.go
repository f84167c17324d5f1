package agent_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/agent/sds"
)

// TestAgentServesSDS: a running agent serves Envoy's SDS on its Workload
// API socket with the names of its configuration, from the SVIDs it
// obtained from a real server.
func TestAgentServesSDS(t *testing.T) {
	var sock string
	e := startWith(t, nil, func(c *agent.Config) {
		c.SDS = sds.Settings{DefaultSVIDName: "svid", DefaultBundleName: "bundle"}
		sock = c.SocketPath
	})
	entry := e.createEntry(t, "/workload/envoy")
	e.waitIdentity(t, entry.Id)

	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deliveryBound)
	defer cancel()
	resp, err := secretv3.NewSecretDiscoveryServiceClient(cc).FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{ResourceNames: []string{"svid", "bundle"}, TypeUrl: sds.SecretTypeURL})
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]*tlsv3.Secret)
	for _, r := range resp.Resources {
		s := new(tlsv3.Secret)
		if err := r.UnmarshalTo(s); err != nil {
			t.Fatal(err)
		}
		got[s.Name] = s
	}
	block, _ := pem.Decode(got["svid"].GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	if block == nil {
		t.Fatalf("no certificate in %v", got["svid"])
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://example.org/workload/envoy" {
		t.Fatalf("svid is %v", leaf.URIs)
	}
	if got["bundle"].GetValidationContext().GetCustomValidatorConfig().GetName() != sds.SPIFFEValidatorName {
		t.Fatalf("bundle is %v", got["bundle"])
	}
}

func TestAgentRefusesBadSDSSettings(t *testing.T) {
	_, err := agent.New(agent.Config{TrustDomain: td, ServerAddresses: []string{"127.0.0.1:1"}, DataDir: t.TempDir(), SocketPath: "/nonexistent/api.sock",
		SDS: sds.Settings{DefaultSVIDName: "ROOTCA"}})
	if !errors.Is(err, sds.ErrBadSettings) {
		t.Fatalf("got %v, want ErrBadSettings", err)
	}
}
