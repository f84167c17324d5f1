//go:build linux

package sds_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/signet-id/signet/agent/sds"
	"github.com/signet-id/signet/internal/nobodytest"
)

// sdsCall is one SDS call the attacker made, as it reports it.
type sdsCall struct {
	Op   string   `json:"op"`
	Code string   `json:"code"`
	IDs  []string `json:"ids,omitempty"` // SPIFFE IDs of the certificates received
}

const rootWeb = "spiffe://example.org/root-web"

// TestOtherUIDGetsNothingOverSDS: a process of uid 65534 asks the agent
// over SDS for root's workload's SPIFFE ID, for "default" and for
// everything. It is refused root's identity (InvalidArgument) in every
// form and receives at most its own: with an entry for uid 65534 that
// one, without one nothing at all.
func TestOtherUIDGetsNothingOverSDS(t *testing.T) {
	nobodytest.RequireRoot(t)
	tests := []struct {
		name    string
		entries []*types.Entry
		want    map[string]sdsCall
		denials string // signet_workload_api_denials_total samples
	}{
		{"uid 65534 has an entry", []*types.Entry{entry("r1", "/root-web", 0), entry("n1", "/nobody", nobodytest.UID)}, map[string]sdsCall{
			"fetch root's ID":  {Code: "InvalidArgument"},
			"stream root's ID": {Code: "InvalidArgument"},
			"fetch default":    {Code: "OK", IDs: []string{"spiffe://example.org/nobody"}},
			"stream default":   {Code: "OK", IDs: []string{"spiffe://example.org/nobody"}},
			"fetch everything": {Code: "OK", IDs: []string{"spiffe://example.org/nobody"}},
		}, `signet_workload_api_denials_total{reason="not_authorized"} 2`},
		{"uid 65534 has no entry", []*types.Entry{entry("r1", "/root-web", 0)}, map[string]sdsCall{
			"fetch root's ID":  {Code: "InvalidArgument"},
			"stream root's ID": {Code: "InvalidArgument"},
			"fetch default":    {Code: "InvalidArgument"},
			"stream default":   {Code: "InvalidArgument"},
			"fetch everything": {Code: "PermissionDenied"},
		}, "signet_workload_api_denials_total{reason=\"no_identity\"} 1\nsignet_workload_api_denials_total{reason=\"not_authorized\"} 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := serve(t, sds.Settings{}, tt.entries...)
			// Let uid 65534 reach the socket: only attestation may stop it.
			if err := os.Chmod(filepath.Dir(filepath.Dir(f.sock)), 0o755); err != nil {
				t.Fatal(err)
			}
			got := runSDSAttacker(t, f.sock)
			for op, want := range tt.want {
				g := got[op]
				if g.Code != want.Code || !slices.Equal(g.IDs, want.IDs) {
					t.Errorf("%s: got %s %v, want %s %v", op, g.Code, g.IDs, want.Code, want.IDs)
				}
				if slices.Contains(g.IDs, rootWeb) {
					t.Errorf("%s: uid 65534 received root's SVID", op)
				}
			}
			// Each refusal is a denial (and a security event).
			wantMetric(t, f.reg, "signet_workload_api_denials_total",
				"Workload API calls refused, by reason: no_identity, attestation_failed, rate_limited, missing_security_header, not_authorized (SDS names the caller does not hold).",
				"counter", tt.denials)
		})
	}
}

// runSDSAttacker runs the attacker as uid 65534 and returns its calls.
func runSDSAttacker(t *testing.T, sock string) map[string]sdsCall {
	t.Helper()
	dir, err := os.MkdirTemp("", "sds-attacker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := nobodytest.TestBinary(t, dir, "attacker")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a safety net, not a timing assertion
	defer cancel()
	cmd := nobodytest.As(exec.CommandContext(ctx, bin, "-test.run=^TestHelperSDSAttacker$"))
	cmd.Env = append(os.Environ(), "SIGNET_SDS_ATTACK_SOCK="+sock)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("attacker: %v\n%s\n%s", err, out, stderr.Bytes())
	}
	calls := make(map[string]sdsCall)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var c sdsCall
		if json.Unmarshal(sc.Bytes(), &c) == nil && c.Op != "" {
			calls[c.Op] = c
		}
	}
	if len(calls) != 5 {
		t.Fatalf("attacker reported %d calls:\n%s\n%s", len(calls), out, stderr.Bytes())
	}
	return calls
}

// TestHelperSDSAttacker is the attacker process of
// TestOtherUIDGetsNothingOverSDS (SIGNET_SDS_ATTACK_SOCK set).
func TestHelperSDSAttacker(t *testing.T) {
	sock := os.Getenv("SIGNET_SDS_ATTACK_SOCK")
	if sock == "" {
		t.Skip("helper process only")
	}
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := secretv3.NewSecretDiscoveryServiceClient(cc)
	ctx := testContext(t)
	report := func(op string, resp *discoveryv3.DiscoveryResponse, err error) {
		call := sdsCall{Op: op, Code: status.Code(err).String()}
		for _, r := range resp.GetResources() {
			call.IDs = append(call.IDs, secretID(r.GetValue())...)
		}
		b, _ := json.Marshal(call)
		fmt.Println(string(b))
	}
	fetch := func(names ...string) (*discoveryv3.DiscoveryResponse, error) {
		return c.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{Node: envoyNode(nil), ResourceNames: names, TypeUrl: sds.SecretTypeURL})
	}
	stream := func(names ...string) (*discoveryv3.DiscoveryResponse, error) {
		s, err := c.StreamSecrets(ctx)
		if err != nil {
			return nil, err
		}
		defer s.CloseSend()
		if err := s.Send(&discoveryv3.DiscoveryRequest{Node: envoyNode(nil), ResourceNames: names, TypeUrl: sds.SecretTypeURL}); err != nil {
			return nil, err
		}
		return s.Recv()
	}
	resp, err := fetch(rootWeb)
	report("fetch root's ID", resp, err)
	resp, err = stream(rootWeb)
	report("stream root's ID", resp, err)
	resp, err = fetch("default")
	report("fetch default", resp, err)
	resp, err = stream("default")
	report("stream default", resp, err)
	resp, err = fetch()
	report("fetch everything", resp, err)
}

// secretID returns the SPIFFE ID of the certificate in an encoded
// tls_certificate secret, if any.
func secretID(raw []byte) []string {
	s := new(tlsv3.Secret)
	if proto.Unmarshal(raw, s) != nil || s.GetTlsCertificate() == nil {
		return nil
	}
	svid, err := x509svid.Parse(s.GetTlsCertificate().CertificateChain.GetInlineBytes(), s.GetTlsCertificate().PrivateKey.GetInlineBytes())
	if err != nil {
		return []string{"unparsable"}
	}
	return []string{svid.ID.String()}
}
