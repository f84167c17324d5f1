package sds_test

import (
	"os"
	"slices"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/signet-id/signet/agent/sds"
)

// TestEnvoyStream drives one stream as Envoy does: the initial request
// with node and names, ACK, a push on SVID rotation, a NACK that is not
// answered, a stale request that is ignored, names changed mid-stream, a
// push on an entry change, and an unknown name that ends the stream with
// InvalidArgument. A second stream with no names follows entries added
// and removed.
func TestEnvoyStream(t *testing.T) {
	me := os.Geteuid()
	web, api := entry("e1", "/web", me), entry("e2", "/api", me)
	f := serve(t, sds.Settings{}, web, api)
	ctx := testContext(t)

	e := newEnvoy(t, ctx, f.client(), "default", "ROOTCA")
	r1 := e.recv()
	got := decoded(t, r1)
	if r1.VersionInfo != "1" || r1.Nonce == "" || !slices.Equal(names(got), []string{"ROOTCA", "default"}) {
		t.Fatalf("first response: version %q nonce %q secrets %v", r1.VersionInfo, r1.Nonce, names(got))
	}
	// default is the first identity (lowest entry ID), ROOTCA the own bundle.
	if !leaf(t, got["default"]).Equal(f.state.SVIDs["e1"].Chain[0]) {
		t.Fatal("default is not web's SVID")
	}
	if d := validatorDomains(t, got["ROOTCA"]); len(d) != 1 || len(d[td.Name()]) != 1 || !d[td.Name()][0].Equal(f.ca.Cert()) {
		t.Fatalf("ROOTCA trust domains %v", d)
	}
	e.ack()

	// Rotation: the next response is the new SVID (had the ACK been
	// answered, this would be the old one again).
	old := f.state.SVIDs["e1"].Chain[0]
	f.mint(web)
	f.cache.Update(f.state)
	r2 := e.recv()
	if c := leaf(t, decoded(t, r2)["default"]); r2.VersionInfo != "2" || c.Equal(old) || !c.Equal(f.state.SVIDs["e1"].Chain[0]) {
		t.Fatalf("after rotation: version %q, rotated SVID served: %v", r2.VersionInfo, c.Equal(f.state.SVIDs["e1"].Chain[0]))
	}

	// NACK, then a request with the stale nonce of r1, then new names:
	// only the last is answered.
	e.nack("bad private key")
	e.send(&discoveryv3.DiscoveryRequest{VersionInfo: "1", ResourceNames: []string{"ALL"}, ResponseNonce: r1.Nonce})
	e.subscribe("ALL", "spiffe://example.org/api")
	r3 := e.recv()
	got = decoded(t, r3)
	if r3.VersionInfo != "3" || !slices.Equal(names(got), []string{"ALL", "spiffe://example.org/api"}) {
		t.Fatalf("after NACK and new names: version %q secrets %v", r3.VersionInfo, names(got))
	}
	if d := validatorDomains(t, got["ALL"]); len(d) != 1 {
		t.Fatalf("ALL before federation: %v", d)
	}
	e.ack()

	// Entry change: api now federates with partner.test, so ALL grows.
	api2 := proto.Clone(api).(*types.Entry)
	api2.FederatesWith = []string{partner.Name()}
	f.state.Entries = []*types.Entry{web, api2}
	f.cache.Update(f.state)
	r4 := e.recv()
	d := validatorDomains(t, decoded(t, r4)["ALL"])
	if r4.VersionInfo != "4" || len(d) != 2 || len(d[partner.Name()]) != 1 {
		t.Fatalf("after federation: version %q ALL %v", r4.VersionInfo, d)
	}
	e.ack()

	// A stream asking for everything follows entries added and removed.
	all := newEnvoy(t, ctx, f.client())
	want := []string{"spiffe://example.org", "spiffe://example.org/api", "spiffe://example.org/web", "spiffe://partner.test"}
	if got := names(decoded(t, all.recv())); !slices.Equal(got, want) {
		t.Fatalf("everything: %v, want %v", got, want)
	}
	all.ack()
	batch := entry("e3", "/batch", me)
	f.state.Entries = append(slices.Clone(f.state.Entries), batch)
	f.mint(batch)
	f.cache.Update(f.state)
	want = []string{"spiffe://example.org", "spiffe://example.org/api", "spiffe://example.org/batch", "spiffe://example.org/web", "spiffe://partner.test"}
	if got := names(decoded(t, all.recv())); !slices.Equal(got, want) {
		t.Fatalf("after adding batch: %v, want %v", got, want)
	}
	all.ack()
	f.state.Entries = []*types.Entry{api2, batch}
	f.cache.Update(f.state)
	want = []string{"spiffe://example.org", "spiffe://example.org/api", "spiffe://example.org/batch", "spiffe://partner.test"}
	if got := names(decoded(t, all.recv())); !slices.Equal(got, want) {
		t.Fatalf("after removing web: %v, want %v", got, want)
	}
	all.ack()

	// An unknown name ends the first stream, as in SPIRE.
	e.subscribe("spiffe://example.org/not-mine")
	_, err := e.stream.Recv()
	wantCode(t, err, codes.InvalidArgument)

	wantMetric(t, f.reg, "signet_sds_nacks_total", "SDS responses Envoy rejected (NACK).", "counter", "signet_sds_nacks_total 1")
	wantMetric(t, f.reg, "signet_sds_streams_open", "SDS StreamSecrets streams currently open.", "gauge", "signet_sds_streams_open 1")
	wantMetric(t, f.reg, "signet_sds_responses_total", "SDS responses sent (stream pushes and fetches), by method.", "counter",
		`signet_sds_responses_total{method="StreamSecrets"} 7`)
}

// TestFetchSecrets checks the resource names FetchSecrets answers, the
// validation context forms, and the refusals.
func TestFetchSecrets(t *testing.T) {
	me := os.Geteuid()
	f := serve(t, sds.Settings{DefaultSVIDName: "my-svid"}, entry("e1", "/web", me, partner.Name()), entry("e2", "/api", me))
	client := f.client()
	ctx := testContext(t)

	tests := []struct {
		name     string
		names    []string
		node     map[string]any
		want     []string
		code     codes.Code
		trustedC bool // validation contexts as trusted_ca
		envoy117 bool
	}{
		{name: "everything", want: []string{"spiffe://example.org", "spiffe://example.org/api", "spiffe://example.org/web", "spiffe://partner.test"}},
		{name: "configured default name", names: []string{"my-svid", "ROOTCA", "ALL"}, want: []string{"ALL", "ROOTCA", "my-svid"}},
		{name: "default is not the name any more", names: []string{"default"}, code: codes.InvalidArgument},
		{name: "federated trust domain", names: []string{"spiffe://partner.test"}, want: []string{"spiffe://partner.test"}},
		{name: "trusted_ca by node metadata", names: []string{"ROOTCA", "spiffe://partner.test"}, node: map[string]any{"disable_spiffe_cert_validation": true},
			want: []string{"ROOTCA", "spiffe://partner.test"}, trustedC: true},
		{name: "trusted_ca for Envoy 1.17", names: []string{"spiffe://example.org"}, envoy117: true, want: []string{"spiffe://example.org"}, trustedC: true},
		{name: "ALL needs the SPIFFE validator", names: []string{"ALL"}, node: map[string]any{"disable_spiffe_cert_validation": "true"}, code: codes.FailedPrecondition},
		{name: "unknown SPIFFE ID", names: []string{"spiffe://example.org/web", "spiffe://example.org/db"}, code: codes.InvalidArgument},
		{name: "unknown trust domain", names: []string{"spiffe://other.test"}, code: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := envoyNode(tt.node)
			if tt.envoy117 {
				node.GetUserAgentBuildVersion().Version.MinorNumber = 17
			}
			resp, err := client.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{Node: node, ResourceNames: tt.names, TypeUrl: sds.SecretTypeURL})
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			got := decoded(t, resp)
			if resp.VersionInfo != "" || resp.Nonce != "" || !slices.Equal(names(got), tt.want) {
				t.Fatalf("version %q nonce %q secrets %v, want %v", resp.VersionInfo, resp.Nonce, names(got), tt.want)
			}
			for _, s := range got {
				vc := s.GetValidationContext()
				if vc == nil {
					continue
				}
				if tt.trustedC != (vc.TrustedCa != nil) || tt.trustedC == (vc.CustomValidatorConfig != nil) {
					t.Errorf("%s: trusted_ca %v, custom validator %v", s.Name, vc.TrustedCa != nil, vc.CustomValidatorConfig != nil)
				}
			}
		})
	}

	// The workload API's security header is not needed, but a wrong type
	// URL is refused.
	_, err := client.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"})
	wantCode(t, err, codes.InvalidArgument)
	delta, err := client.DeltaSecrets(ctx)
	if err == nil {
		_, err = delta.Recv()
	}
	wantCode(t, err, codes.Unimplemented)
}
