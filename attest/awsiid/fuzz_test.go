package awsiid_test

import (
	"context"
	"testing"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/awsiid"
	"github.com/signet-id/signet/attest/awsiid/awsiidtest"
	"google.golang.org/grpc/status"
)

// FuzzAttestPayload: any payload is refused with a gRPC status or
// attested, never a panic (the JSON, the document, base64 and PKCS #7
// parsers all see it).
func FuzzAttestPayload(f *testing.F) {
	s2048, s1024 := awsiidtest.NewSigner(f, 2048), awsiidtest.NewSigner(f, 1024)
	cfg, err := awsiid.ConfigFromPluginData(td, awsiid.ServerPluginData{AccountIDAllowList: []string{"1"},
		RSA2048Certificates: map[string]string{"r": s2048.Path}, RSA1024Certificates: map[string]string{"r": s1024.Path}})
	if err != nil {
		f.Fatal(err)
	}
	a, err := awsiid.NewAttestor(cfg)
	if err != nil {
		f.Fatal(err)
	}
	imds := awsiidtest.NewIMDS(f, awsiidtest.MarshalDocument(f, awsiidtest.Document("1", "r", "i-9")), s2048, s1024)
	ev, _ := awsiid.NewEvidence(awsiid.AgentPluginData{EC2MetadataEndpoint: imds.URL}, nil)
	good, err := ev.Payload(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"document":"{\"accountId\":\"1\",\"region\":\"r\",\"instanceId\":\"i\"}","rsa2048":"MIAGCSqGSIb3DQEHAqCAMIACAQEx"}`))
	f.Add([]byte(`{"document":"{\"accountId\":\"1\",\"region\":\"r\",\"instanceId\":\"i\"}","signature":"AAAA"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		_, err := a.Attest(context.Background(), attest.NodeRequest{Payload: payload})
		if _, ok := status.FromError(err); err != nil && !ok {
			t.Fatalf("not a status: %v", err)
		}
	})
}
