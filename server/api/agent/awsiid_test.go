package agent_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/signet-id/signet/attest/awsiid"
	"github.com/signet-id/signet/attest/awsiid/awsiidtest"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
)

// TestAttestAgentAWSIID runs aws_iid over the real AttestAgent stream and
// store, the agent half reading a metadata service stand-in on loopback
// whose document a test "AWS" key signed: the agent ID and selectors are
// SPIRE's; forged, untrusted, foreign-account, malformed and replayed
// evidence gets a precise code and stores nothing.
func TestAttestAgentAWSIID(t *testing.T) {
	const account, region = "123456789012", "us-test-1"
	s2048, s1024 := awsiidtest.NewSigner(t, 2048), awsiidtest.NewSigner(t, 1024)
	rogue2048, rogue1024 := awsiidtest.NewSigner(t, 2048), awsiidtest.NewSigner(t, 1024)
	cfg, err := awsiid.ConfigFromPluginData(td, awsiid.ServerPluginData{
		AccountIDAllowList:  []string{account},
		RSA2048Certificates: map[string]string{region: s2048.Path},
		RSA1024Certificates: map[string]string{region: s1024.Path},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := awsiid.NewAttestor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, a)

	payloadFrom := func(doc awsiid.Document, s2048, s1024 *awsiidtest.Signer) []byte {
		imds := awsiidtest.NewIMDS(t, awsiidtest.MarshalDocument(t, doc), s2048, s1024)
		ev, err := awsiid.NewEvidence(awsiid.AgentPluginData{EC2MetadataEndpoint: imds.URL}, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := ev.Payload(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	edit := func(p []byte, f func(*awsiid.AttestationData)) []byte {
		var d awsiid.AttestationData
		if err := json.Unmarshal(p, &d); err != nil {
			t.Fatal(err)
		}
		f(&d)
		b, _ := json.Marshal(d)
		return b
	}

	doc := awsiidtest.Document(account, region, "i-0123456789abcdef0")
	good := payloadFrom(doc, s2048, s1024)
	res, err := e.attestStream(t, awsiid.Type, good, nil)
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	wantID := "spiffe://example.org/spire/agent/aws_iid/123456789012/us-test-1/i-0123456789abcdef0"
	if got := res.GetSvid().GetId(); got.GetPath() != "/spire/agent/aws_iid/123456789012/us-test-1/i-0123456789abcdef0" || res.Reattestable {
		t.Fatalf("result %v, want %s, not reattestable", res, wantID)
	}
	rec, err := e.store.GetAgent(testContext(t), spiffeid.RequireFromString(wantID))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"az:us-test-1a", "image:id:ami-0123456789abcdef0", "instance:id:i-0123456789abcdef0", "region:us-test-1"}
	if rec.AttestationType != awsiid.Type || rec.CanReattest || len(rec.Selectors) != len(want) {
		t.Fatalf("agent record %v", rec)
	}
	for i, s := range rec.Selectors {
		if s.Type != awsiid.Type || s.Value != want[i] {
			t.Fatalf("selector %d = %v, want aws_iid:%s", i, s, want[i])
		}
	}

	// The RSA-1024 signature alone (an older agent) attests too.
	doc1024 := awsiidtest.Document(account, region, "i-1024")
	only1024 := edit(payloadFrom(doc1024, s2048, s1024), func(d *awsiid.AttestationData) { d.SignatureRSA2048 = "" })
	if _, err := e.attestStream(t, awsiid.Type, only1024, nil); err != nil {
		t.Fatalf("attest with the RSA-1024 signature: %v", err)
	}

	other := payloadFrom(awsiidtest.Document(account, region, "i-other"), s2048, s1024)
	var otherData awsiid.AttestationData
	_ = json.Unmarshal(other, &otherData)
	forgedDoc := awsiidtest.Document(account, region, "i-forged")
	tests := []struct {
		name    string
		payload []byte
		code    codes.Code
		msg     string
	}{
		{"replayed document", good, codes.PermissionDenied, "attestation data has already been used to attest an agent"},
		{"forged document (edited after signing)", edit(good, func(d *awsiid.AttestationData) {
			d.Document = string(awsiidtest.MarshalDocument(t, forgedDoc))
		}), codes.PermissionDenied, "the signed content is not the document"},
		{"another document's genuine signature", edit(good, func(d *awsiid.AttestationData) {
			d.SignatureRSA2048 = otherData.SignatureRSA2048
		}), codes.PermissionDenied, "the signed content is not the document"},
		{"signed by an untrusted key", payloadFrom(forgedDoc, rogue2048, rogue1024), codes.PermissionDenied, "failed verification of instance identity cryptographic signature"},
		{"RSA-1024 signature by an untrusted key", edit(payloadFrom(forgedDoc, rogue2048, rogue1024), func(d *awsiid.AttestationData) { d.SignatureRSA2048 = "" }),
			codes.PermissionDenied, "failed to verify the cryptographic signature"},
		{"RSA-1024 signature of another document", edit(good, func(d *awsiid.AttestationData) {
			d.SignatureRSA2048, d.Signature = "", otherData.Signature
		}), codes.PermissionDenied, "failed to verify the cryptographic signature"},
		{"account not allowed", payloadFrom(awsiidtest.Document("999999999999", region, "i-foreign"), s2048, s1024), codes.PermissionDenied, `account "999999999999" is not in the allow list`},
		{"region without a trusted certificate", payloadFrom(awsiidtest.Document(account, "us-nowhere-1", "i-x"), s2048, s1024), codes.PermissionDenied, `unsupported region "us-nowhere-1"`},
		{"built-in region, test key", payloadFrom(awsiidtest.Document(account, "us-east-1", "i-x"), s2048, s1024), codes.PermissionDenied, "failed verification"},
		{"no signature", edit(good, func(d *awsiid.AttestationData) { d.Signature, d.SignatureRSA2048 = "", "" }), codes.InvalidArgument, "signature is required"},
		{"signature not base64", edit(good, func(d *awsiid.AttestationData) { d.SignatureRSA2048 = ""; d.Signature = "!!" }), codes.InvalidArgument, "failed to decode the IID signature"},
		{"PKCS #7 not DER", edit(good, func(d *awsiid.AttestationData) { d.SignatureRSA2048 = "AAAA" }), codes.InvalidArgument, "failed to parse the instance identity cryptographic signature"},
		{"document not JSON", edit(good, func(d *awsiid.AttestationData) { d.Document = "{" }), codes.InvalidArgument, "failed to unmarshal the IID"},
		{"document without instance", edit(good, func(d *awsiid.AttestationData) { d.Document = `{"accountId":"1","region":"r"}` }), codes.InvalidArgument, "no instanceId"},
		{"malformed payload", []byte("{"), codes.InvalidArgument, "failed to unmarshal the attestation data"},
		{"empty payload", nil, codes.InvalidArgument, "missing attestation payload"},
		{"payload too large", make([]byte, awsiid.MaxPayload+1), codes.InvalidArgument, "longer than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.attestStream(t, awsiid.Type, tt.payload, nil)
			if res.GetSvid() != nil {
				t.Fatalf("an SVID was issued (%v)", err)
			}
			wantStatus(t, err, tt.code, tt.msg)
			if n, err := e.store.CountAgents(testContext(t), store.AgentFilter{}); err != nil || n != 2 {
				t.Fatalf("%d agents stored (%v), want only the first two", n, err)
			}
		})
	}
}
