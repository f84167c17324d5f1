package sds_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/agent/cache/cachetest"
	"github.com/signet-id/signet/agent/sds"
	"github.com/signet-id/signet/agent/workloadapi"
	"github.com/signet-id/signet/agent/workloadapi/workloadapitest"
	"github.com/signet-id/signet/attest/unix"
)

var (
	td      = spiffeid.RequireTrustDomainFromString("example.org")
	partner = spiffeid.RequireTrustDomainFromString("partner.test")
)

// uidSelector selects processes of uid.
func uidSelector(uid int) string { return "uid:" + strconv.Itoa(uid) }

// entry returns a workload entry for path selected by uid.
func entry(id, path string, uid int, federatesWith ...string) *types.Entry {
	return &types.Entry{
		Id:            id,
		SpiffeId:      &types.SPIFFEID{TrustDomain: td.Name(), Path: path},
		ParentId:      &types.SPIFFEID{TrustDomain: td.Name(), Path: "/agent"},
		Selectors:     []*types.Selector{{Type: unix.SelectorType, Value: uidSelector(uid)}},
		FederatesWith: federatesWith,
	}
}

// fixture is a real agent cache served on a real Workload API socket.
type fixture struct {
	t     *testing.T
	ca    *cachetest.CA
	cache *cache.Cache
	state cache.Update
	sock  string
	reg   *prometheus.Registry
}

// serve starts the Workload API server (with SDS on it) over a cache
// holding entries, each with a fresh SVID from a test CA, and a federated
// bundle for partner.test.
func serve(t *testing.T, settings sds.Settings, entries ...*types.Entry) *fixture {
	t.Helper()
	f := &fixture{t: t, ca: cachetest.NewCA(t, td), reg: prometheus.NewRegistry()}
	f.cache = cache.New(td)
	f.state = cache.Update{
		Bundle:    f.ca.Bundle(),
		Federated: map[spiffeid.TrustDomain]*spiffebundle.Bundle{partner: cachetest.NewCA(t, partner).Bundle()},
		SVIDs:     map[string]*cache.X509SVID{},
	}
	f.state.Entries = entries
	for _, e := range entries {
		f.mint(e)
	}
	f.cache.Update(f.state)

	srv, err := workloadapi.New(workloadapi.Config{Cache: f.cache, Attestor: unix.New(), TrustDomain: td, Registerer: f.reg, SDS: settings})
	if err != nil {
		t.Fatal(err)
	}
	f.sock = workloadapitest.Serve(t, srv)
	return f
}

// mint gives e a fresh SVID in the fixture's state (not yet applied).
func (f *fixture) mint(e *types.Entry) {
	id, err := cache.EntrySPIFFEID(e)
	if err != nil {
		f.t.Fatal(err)
	}
	svids := make(map[string]*cache.X509SVID, len(f.state.SVIDs)+1)
	for k, v := range f.state.SVIDs {
		svids[k] = v
	}
	svids[e.Id] = f.ca.X509SVID(f.t, id)
	f.state.SVIDs = svids
}

// client returns an SDS client on the socket, without the Workload API's
// security header (Envoy does not send it).
func (f *fixture) client() secretv3.SecretDiscoveryServiceClient {
	f.t.Helper()
	cc, err := grpc.NewClient("unix://"+f.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { cc.Close() })
	return secretv3.NewSecretDiscoveryServiceClient(cc)
}

func testContext(t *testing.T) context.Context {
	// A safety net against hangs, not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// envoyNode is the node an Envoy 1.31 sends, with optional metadata.
func envoyNode(metadata map[string]any) *corev3.Node {
	n := &corev3.Node{
		Id: "sidecar~10.0.0.1~web", Cluster: "web", UserAgentName: "envoy",
		UserAgentVersionType: &corev3.Node_UserAgentBuildVersion{UserAgentBuildVersion: &corev3.BuildVersion{
			Version: &typev3.SemanticVersion{MajorNumber: 1, MinorNumber: 31},
		}},
	}
	if metadata != nil {
		md, err := structpb.NewStruct(metadata)
		if err != nil {
			panic(err)
		}
		n.Metadata = md
	}
	return n
}

// envoy drives one StreamSecrets stream the way Envoy's SotW gRPC mux does:
// the node on the first request only, then ACKs with the version and
// nonce of the response applied, NACKs with the last applied version, the
// rejected nonce and error_detail.
type envoy struct {
	t       *testing.T
	stream  grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
	names   []string
	applied string // version_info of the last ACKed response
	last    *discoveryv3.DiscoveryResponse
	sentAny bool
}

func newEnvoy(t *testing.T, ctx context.Context, c secretv3.SecretDiscoveryServiceClient, names ...string) *envoy {
	t.Helper()
	s, err := c.StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := &envoy{t: t, stream: s}
	e.subscribe(names...)
	return e
}

func (e *envoy) send(req *discoveryv3.DiscoveryRequest) {
	e.t.Helper()
	req.TypeUrl = sds.SecretTypeURL
	if !e.sentAny {
		req.Node = envoyNode(nil)
		e.sentAny = true
	}
	if err := e.stream.Send(req); err != nil {
		e.t.Fatal(err)
	}
}

// subscribe changes the resource names, acknowledging nothing new.
func (e *envoy) subscribe(names ...string) {
	e.names = names
	e.send(&discoveryv3.DiscoveryRequest{VersionInfo: e.applied, ResourceNames: names, ResponseNonce: e.nonce()})
}

func (e *envoy) nonce() string {
	if e.last == nil {
		return ""
	}
	return e.last.Nonce
}

// recv waits for the next response.
func (e *envoy) recv() *discoveryv3.DiscoveryResponse {
	e.t.Helper()
	resp, err := e.stream.Recv()
	if err != nil {
		e.t.Fatalf("recv: %v", err)
	}
	e.last = resp
	return resp
}

func (e *envoy) ack() {
	e.applied = e.last.VersionInfo
	e.send(&discoveryv3.DiscoveryRequest{VersionInfo: e.applied, ResourceNames: e.names, ResponseNonce: e.last.Nonce})
}

func (e *envoy) nack(msg string) {
	e.send(&discoveryv3.DiscoveryRequest{VersionInfo: e.applied, ResourceNames: e.names, ResponseNonce: e.last.Nonce,
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: msg}})
}

// decoded is a response's secrets by name.
func decoded(t *testing.T, resp *discoveryv3.DiscoveryResponse) map[string]*tlsv3.Secret {
	t.Helper()
	if resp.TypeUrl != sds.SecretTypeURL {
		t.Fatalf("type URL %q", resp.TypeUrl)
	}
	out := make(map[string]*tlsv3.Secret)
	for _, r := range resp.Resources {
		s := new(tlsv3.Secret)
		if err := r.UnmarshalTo(s); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[s.Name]; dup {
			t.Fatalf("secret %s twice", s.Name)
		}
		out[s.Name] = s
	}
	return out
}

func names(secrets map[string]*tlsv3.Secret) []string {
	var out []string
	for n := range secrets {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// certs decodes a PEM data source into certificates.
func certs(t *testing.T, ds *corev3.DataSource) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := ds.GetInlineBytes()
	for len(rest) > 0 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil || b.Type != "CERTIFICATE" {
			t.Fatalf("bad PEM in %q", ds.GetInlineBytes())
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// leaf returns the leaf of a tls_certificate secret.
func leaf(t *testing.T, s *tlsv3.Secret) *x509.Certificate {
	t.Helper()
	tc := s.GetTlsCertificate()
	if tc == nil {
		t.Fatalf("secret %s is no tls_certificate: %v", s.Name, s)
	}
	return certs(t, tc.CertificateChain)[0]
}

// validatorDomains returns a SPIFFE validator config's trust domains and
// their bundles.
func validatorDomains(t *testing.T, s *tlsv3.Secret) map[string][]*x509.Certificate {
	t.Helper()
	cvc := s.GetValidationContext().GetCustomValidatorConfig()
	if cvc.GetName() != sds.SPIFFEValidatorName {
		t.Fatalf("secret %s has no SPIFFE validator: %v", s.Name, s)
	}
	cfg := new(tlsv3.SPIFFECertValidatorConfig)
	if err := cvc.TypedConfig.UnmarshalTo(cfg); err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]*x509.Certificate)
	for _, d := range cfg.TrustDomains {
		out[d.Name] = certs(t, d.TrustBundle)
	}
	return out
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("got %v (%v), want %v", got, err, code)
	}
}

func wantMetric(t *testing.T, reg *prometheus.Registry, name, help, kind, value string) {
	t.Helper()
	want := "# HELP " + name + " " + help + "\n# TYPE " + name + " " + kind + "\n" + value + "\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), name); err != nil {
		t.Error(err)
	}
}
