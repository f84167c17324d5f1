package awsiid_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/awsiid"
	"github.com/signet-id/signet/attest/awsiid/awsiidtest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// TestBuiltinCertificates: AWS's certificates as SPIRE v1.13.3 has them,
// RSA-2048 for 31 regions, RSA-1024 for 14 regions and the default.
func TestBuiltinCertificates(t *testing.T) {
	r2048, r1024 := awsiid.BuiltinRSA2048(), awsiid.BuiltinRSA1024()
	if len(r2048) != 31 || len(r1024) != 15 {
		t.Fatalf("%d RSA-2048 and %d RSA-1024 regions, want 31 and 15", len(r2048), len(r1024))
	}
	for _, r := range []string{"us-east-1", "eu-west-1", "us-gov-west-1", "cn-north-1"} {
		if len(r2048[r]) != 1 || r2048[r][0].PublicKeyAlgorithm.String() != "RSA" {
			t.Errorf("RSA-2048 certificate of %s: %v", r, r2048[r])
		}
	}
	if len(r1024["default"]) != 1 {
		t.Error("no default RSA-1024 certificate")
	}
}

// TestConfigRefusesWhatNeedsTheAWSAPI: Signet does not call the AWS API,
// so the settings that would make it are refused rather than ignored, and
// an account allow list is required.
func TestConfigRefusesWhatNeedsTheAWSAPI(t *testing.T) {
	allow := []string{"123456789012"}
	tests := []struct {
		name string
		d    awsiid.ServerPluginData
		msg  string
	}{
		{"credentials", awsiid.ServerPluginData{AccountIDAllowList: allow, AccessKeyID: "AKIA"}, "access_key_id is not supported"},
		{"assume role", awsiid.ServerPluginData{AccountIDAllowList: allow, AssumeRole: "r"}, "assume_role is not supported"},
		{"tags in the template", awsiid.ServerPluginData{AccountIDAllowList: allow, AgentPathTemplate: "/{{ .Tags.name }}"}, ".Tags needs the AWS API"},
		{"no allow list", awsiid.ServerPluginData{}, "accountid_allow_list is required"},
		{"bad partition", awsiid.ServerPluginData{AccountIDAllowList: allow, Partition: "aws-mars"}, "invalid partition"},
		{"bad template", awsiid.ServerPluginData{AccountIDAllowList: allow, AgentPathTemplate: "/{{ .Nope"}, "agent_path_template"},
		{"missing certificate file", awsiid.ServerPluginData{AccountIDAllowList: allow, RSA2048Certificates: map[string]string{"r": "/nonexistent"}}, `region "r"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := awsiid.ConfigFromPluginData(td, tt.d)
			if err == nil {
				_, err = awsiid.NewAttestor(cfg)
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err %v, want %q", err, tt.msg)
			}
		})
	}
}

// TestAgentPathTemplate: SPIRE's template fields.
func TestAgentPathTemplate(t *testing.T) {
	s2048, s1024 := awsiidtest.NewSigner(t, 2048), awsiidtest.NewSigner(t, 1024)
	cfg, err := awsiid.ConfigFromPluginData(td, awsiid.ServerPluginData{
		AccountIDAllowList: []string{"1"}, AgentPathTemplate: "/{{ .PluginName }}/{{ .Region }}/{{ .InstanceID }}",
		RSA2048Certificates: map[string]string{"r": s2048.Path},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := awsiid.NewAttestor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	imds := awsiidtest.NewIMDS(t, awsiidtest.MarshalDocument(t, awsiidtest.Document("1", "r", "i-9")), s2048, s1024)
	ev, _ := awsiid.NewEvidence(awsiid.AgentPluginData{EC2MetadataEndpoint: imds.URL + "/"}, nil)
	p, err := ev.Payload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Attest(context.Background(), attest.NodeRequest{Payload: p})
	if err != nil || res.AgentID.String() != "spiffe://example.org/spire/agent/aws_iid/r/i-9" {
		t.Fatalf("%v %v", res.AgentID, err)
	}
}

// TestAgentIMDSv1Fallback: where the service has no token endpoint (404),
// the agent asks without a token, as the AWS SDK does; a refused token
// (403: IMDS disabled) is an error.
func TestAgentIMDSv1Fallback(t *testing.T) {
	for _, tt := range []struct {
		tokenCode int
		wantErr   bool
	}{{http.StatusNotFound, false}, {http.StatusForbidden, true}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/latest/api/token" {
				w.WriteHeader(tt.tokenCode)
				return
			}
			if r.Header.Get("X-Aws-Ec2-Metadata-Token") != "" {
				t.Errorf("token sent to an IMDSv1 service")
			}
			_, _ = w.Write([]byte(strings.TrimPrefix(r.URL.Path, "/latest/dynamic/instance-identity/")))
		}))
		ev, _ := awsiid.NewEvidence(awsiid.AgentPluginData{EC2MetadataEndpoint: srv.URL}, nil)
		p, err := ev.Payload(context.Background())
		srv.Close()
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "403") {
				t.Fatalf("token %d: err %v, want the 403", tt.tokenCode, err)
			}
			continue
		}
		var d awsiid.AttestationData
		if err != nil || json.Unmarshal(p, &d) != nil || d.Document != "document" || d.Signature != "signature" || d.SignatureRSA2048 != "rsa2048" {
			t.Fatalf("token %d: payload %s, %v", tt.tokenCode, p, err)
		}
	}
}

// TestAgentRefusesNonHTTPEndpoint and challenges.
func TestAgentRefusals(t *testing.T) {
	if _, err := awsiid.NewEvidence(awsiid.AgentPluginData{EC2MetadataEndpoint: "169.254.169.254"}, nil); err == nil {
		t.Fatal("an endpoint without a scheme was accepted")
	}
	ev, _ := awsiid.NewEvidence(awsiid.AgentPluginData{}, nil)
	if _, err := ev.Respond(context.Background(), []byte("x")); err == nil {
		t.Fatal("a challenge was answered")
	}
}

// TestAttestTOFULookupError: a failing agent lookup is not an admission.
func TestAttestTOFULookupError(t *testing.T) {
	s2048, s1024 := awsiidtest.NewSigner(t, 2048), awsiidtest.NewSigner(t, 1024)
	cfg, _ := awsiid.ConfigFromPluginData(td, awsiid.ServerPluginData{AccountIDAllowList: []string{"1"}, RSA2048Certificates: map[string]string{"r": s2048.Path}})
	a, _ := awsiid.NewAttestor(cfg)
	imds := awsiidtest.NewIMDS(t, awsiidtest.MarshalDocument(t, awsiidtest.Document("1", "r", "i-9")), s2048, s1024)
	ev, _ := awsiid.NewEvidence(awsiid.AgentPluginData{EC2MetadataEndpoint: imds.URL}, nil)
	p, _ := ev.Payload(context.Background())
	_, err := a.Attest(context.Background(), attest.NodeRequest{Payload: p, Attested: func(context.Context, spiffeid.ID) (bool, error) {
		return false, status.Error(codes.Unavailable, "store down")
	}})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err %v, want the lookup's Unavailable", err)
	}
}

// TestPKCS7Digests: a PKCS #7 signature with a SHA-1 or a SHA-256 digest
// verifies (which one AWS uses has not been checked here).
func TestPKCS7Digests(t *testing.T) {
	for _, sha1 := range []bool{true, false} {
		s2048, s1024 := awsiidtest.NewSigner(t, 2048), awsiidtest.NewSigner(t, 1024)
		s2048.SHA1 = sha1
		cfg, _ := awsiid.ConfigFromPluginData(td, awsiid.ServerPluginData{AccountIDAllowList: []string{"1"}, RSA2048Certificates: map[string]string{"r": s2048.Path}})
		a, _ := awsiid.NewAttestor(cfg)
		imds := awsiidtest.NewIMDS(t, awsiidtest.MarshalDocument(t, awsiidtest.Document("1", "r", "i-9")), s2048, s1024)
		ev, _ := awsiid.NewEvidence(awsiid.AgentPluginData{EC2MetadataEndpoint: imds.URL}, nil)
		p, err := ev.Payload(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Attest(context.Background(), attest.NodeRequest{Payload: p}); err != nil {
			t.Fatalf("SHA-1 %v: %v", sha1, err)
		}
	}
}
