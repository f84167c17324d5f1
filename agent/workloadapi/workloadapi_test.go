package workloadapi_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	gsw "github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/agent/cache/cachetest"
	"github.com/signet-id/signet/agent/workloadapi"
	"github.com/signet-id/signet/agent/workloadapi/workloadapitest"
	"github.com/signet-id/signet/attest/unix"
)

var (
	td    = spiffeid.RequireTrustDomainFromString("example.org")
	fedTD = spiffeid.RequireTrustDomainFromString("partner.test")
)

// mySelector matches the test process itself (the client and the server
// are the same process, so the caller's uid is ours).
func mySelector() string { return "uid:" + strconv.Itoa(os.Geteuid()) }

// otherSelector matches no process of ours.
func otherSelector() string { return "uid:" + strconv.Itoa(os.Geteuid()+4242) }

func newEntry(id, path string, selectorValues ...string) *types.Entry {
	e := &types.Entry{
		Id:       id,
		SpiffeId: &types.SPIFFEID{TrustDomain: td.Name(), Path: path},
		ParentId: &types.SPIFFEID{TrustDomain: td.Name(), Path: "/agent"},
	}
	for _, v := range selectorValues {
		e.Selectors = append(e.Selectors, &types.Selector{Type: unix.SelectorType, Value: v})
	}
	return e
}

type env struct {
	t     *testing.T
	ca    *cachetest.CA
	cache *cache.Cache
	u     cache.Update
	sock  string
	addr  string
	reg   *prometheus.Registry
}

// start serves the Workload API on a fresh socket, backed by a real cache
// holding entries (each given a fresh SVID) and the real unix attestor.
func start(t *testing.T, entries ...*types.Entry) *env {
	t.Helper()
	return startWith(t, nil, entries...)
}

// startWith is start with a hook to adjust the server's configuration.
func startWith(t *testing.T, configure func(*workloadapi.Config), entries ...*types.Entry) *env {
	t.Helper()
	return startServer(t, configure, nil, entries...)
}

// startServer is startWith with a hook to register more services on the
// socket's gRPC server.
func startServer(t *testing.T, configure func(*workloadapi.Config), register func(*env, *grpc.Server), entries ...*types.Entry) *env {
	t.Helper()
	ca := cachetest.NewCA(t, td)
	e := &env{
		t:     t,
		ca:    ca,
		cache: cache.New(td, cache.WithJWTMinter(ca)),
		reg:   prometheus.NewRegistry(),
	}
	e.u = cache.Update{Bundle: ca.Bundle(), SVIDs: map[string]*cache.X509SVID{}}
	for _, en := range entries {
		e.add(en)
	}
	e.apply()

	cfg := workloadapi.Config{
		Cache:       e.cache,
		Attestor:    unix.New(),
		TrustDomain: td,
		Registerer:  e.reg,
	}
	if configure != nil {
		configure(&cfg)
	}
	srv, err := workloadapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if register == nil {
		e.sock = workloadapitest.Serve(t, srv)
		e.addr = "unix://" + e.sock
		return e
	}
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e.sock = filepath.Join(dir, "agent", "api.sock")
	e.addr = "unix://" + e.sock
	l, err := workloadapi.Listen(e.sock)
	if err != nil {
		t.Fatal(err)
	}
	g := srv.NewGRPCServer()
	register(e, g)
	done := make(chan error, 1)
	go func() { done <- g.Serve(l) }()
	t.Cleanup(func() {
		g.Stop()
		if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve: %v", err)
		}
	})
	return e
}

// add adds an entry with a fresh SVID to the pending update.
func (e *env) add(en *types.Entry) {
	e.u.Entries = append(slices.Clone(e.u.Entries), en)
	e.rotate(en.Id)
}

// rotate gives an entry a fresh SVID in the pending update.
func (e *env) rotate(entryID string) {
	svids := make(map[string]*cache.X509SVID, len(e.u.SVIDs)+1)
	for k, v := range e.u.SVIDs {
		svids[k] = v
	}
	for _, en := range e.u.Entries {
		if en.Id == entryID {
			id, err := cache.EntrySPIFFEID(en)
			if err != nil {
				e.t.Fatal(err)
			}
			svids[entryID] = e.ca.X509SVID(e.t, id)
		}
	}
	e.u.SVIDs = svids
}

func (e *env) remove(entryID string) {
	e.u.Entries = slices.DeleteFunc(slices.Clone(e.u.Entries), func(en *types.Entry) bool { return en.Id == entryID })
}

func (e *env) apply() { e.cache.Update(e.u) }

// rawClient returns the generated Workload API client, without the
// security header.
func (e *env) rawClient() workload.SpiffeWorkloadAPIClient {
	e.t.Helper()
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return workload.NewSpiffeWorkloadAPIClient(cc)
}

func withHeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, workloadapi.SecurityHeader, "true")
}

func testContext(t *testing.T) context.Context {
	// A safety net against hangs, not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("got %v (%v), want %v", got, err, code)
	}
}

func TestX509SourceSeesRotationWithoutReconnecting(t *testing.T) {
	e := start(t, newEntry("e1", "/web", mySelector()))
	ctx := testContext(t)

	source, err := gsw.NewX509Source(ctx, gsw.WithClientOptions(gsw.WithAddr(e.addr)))
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()

	svid, err := source.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != "spiffe://example.org/web" {
		t.Fatalf("SVID ID %s", svid.ID)
	}
	if !svid.Certificates[0].Equal(e.u.SVIDs["e1"].Chain[0]) {
		t.Fatal("source holds a different SVID than the cache")
	}
	bundle, err := source.GetX509BundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svid.Certificates[0].Verify(x509.VerifyOptions{
		Roots:     certPool(bundle.X509Authorities()),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		t.Fatalf("SVID does not verify against the delivered bundle: %v", err)
	}

	// Drain the notification of the initial update, then rotate.
	select {
	case <-source.Updated():
	default:
	}
	e.rotate("e1")
	e.apply()
	want := e.u.SVIDs["e1"].Chain[0]
	for i := 0; ; i++ {
		if i == 10 {
			t.Fatal("source did not see the rotated SVID")
		}
		if err := source.WaitUntilUpdated(ctx); err != nil {
			t.Fatal(err)
		}
		svid, err := source.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		if svid.Certificates[0].Equal(want) {
			break
		}
	}
	if n := counterValue(t, e.reg, "signet_workload_api_connections_total"); n != 1 {
		t.Fatalf("%v connections, want 1 (the source reconnected)", n)
	}
}

func certPool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// counterValue returns the value of an unlabelled counter.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestMissingSecurityHeader(t *testing.T) {
	e := start(t, newEntry("e1", "/web", mySelector()))
	client := e.rawClient()

	tests := []struct {
		name string
		md   metadata.MD
	}{
		{"absent", nil},
		{"false", metadata.Pairs(workloadapi.SecurityHeader, "false")},
		{"twice", metadata.Pairs(workloadapi.SecurityHeader, "true", workloadapi.SecurityHeader, "true")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := metadata.NewOutgoingContext(testContext(t), tt.md)
			calls := map[string]func() error{
				"FetchX509SVID": func() error {
					s, err := client.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
					if err != nil {
						return err
					}
					_, err = s.Recv()
					return err
				},
				"FetchX509Bundles": func() error {
					s, err := client.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
					if err != nil {
						return err
					}
					_, err = s.Recv()
					return err
				},
				"FetchJWTBundles": func() error {
					s, err := client.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
					if err != nil {
						return err
					}
					_, err = s.Recv()
					return err
				},
				"FetchJWTSVID": func() error {
					_, err := client.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"a"}})
					return err
				},
				"ValidateJWTSVID": func() error {
					_, err := client.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "a", Svid: "x"})
					return err
				},
			}
			for name, call := range calls {
				if err := call(); status.Code(err) != codes.InvalidArgument {
					t.Errorf("%s: got %v, want InvalidArgument", name, err)
				}
			}
		})
	}
}

func TestNoIdentityPermissionDenied(t *testing.T) {
	e := start(t, newEntry("e1", "/someone-else", otherSelector()))
	ctx := testContext(t)
	client := e.rawClient()
	hctx := withHeader(ctx)

	s, err := client.FetchX509SVID(hctx, &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Recv()
	wantCode(t, err, codes.PermissionDenied)

	xb, err := client.FetchX509Bundles(hctx, &workload.X509BundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = xb.Recv()
	wantCode(t, err, codes.PermissionDenied)

	jb, err := client.FetchJWTBundles(hctx, &workload.JWTBundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = jb.Recv()
	wantCode(t, err, codes.PermissionDenied)

	_, err = gsw.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"}, gsw.WithAddr(e.addr))
	wantCode(t, err, codes.PermissionDenied)

	_, err = gsw.FetchX509SVID(ctx, gsw.WithAddr(e.addr))
	wantCode(t, err, codes.PermissionDenied)
}

func recvSVIDs(t *testing.T, s grpc.ServerStreamingClient[workload.X509SVIDResponse]) []string {
	t.Helper()
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, svid := range resp.Svids {
		certs, err := x509.ParseCertificates(svid.X509Svid)
		if err != nil {
			t.Fatal(err)
		}
		if certs[0].URIs[0].String() != svid.SpiffeId {
			t.Fatalf("certificate URI %s, message spiffe_id %s", certs[0].URIs[0], svid.SpiffeId)
		}
		if _, err := x509.ParsePKCS8PrivateKey(svid.X509SvidKey); err != nil {
			t.Fatal(err)
		}
		if len(svid.Bundle) == 0 {
			t.Fatal("no bundle")
		}
		ids = append(ids, svid.SpiffeId)
	}
	return ids
}

func TestEntryChangesReachOpenStream(t *testing.T) {
	e := start(t, newEntry("e1", "/web", mySelector()))
	ctx := withHeader(testContext(t))
	s, err := e.rawClient().FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := recvSVIDs(t, s); !slices.Equal(got, []string{"spiffe://example.org/web"}) {
		t.Fatalf("first message %q", got)
	}

	// An entry for another workload does not produce a message; the next
	// message received is the one for our new entry, with the full state.
	e.add(newEntry("e0", "/other", otherSelector()))
	e.apply()
	e.add(newEntry("e2", "/web-admin", mySelector()))
	e.apply()
	if got := recvSVIDs(t, s); !slices.Equal(got, []string{"spiffe://example.org/web", "spiffe://example.org/web-admin"}) {
		t.Fatalf("after add %q", got)
	}

	e.remove("e1")
	e.apply()
	if got := recvSVIDs(t, s); !slices.Equal(got, []string{"spiffe://example.org/web-admin"}) {
		t.Fatalf("after remove %q", got)
	}

	e.remove("e2")
	e.apply()
	_, err = s.Recv()
	wantCode(t, err, codes.PermissionDenied)
}

func TestHintsAreUnique(t *testing.T) {
	older := newEntry("e2", "/older", mySelector())
	older.Hint, older.CreatedAt = "internal", 100
	newer := newEntry("e1", "/newer", mySelector())
	newer.Hint, newer.CreatedAt = "internal", 200
	plain := newEntry("e3", "/plain", mySelector())
	e := start(t, older, newer, plain)
	ctx := testContext(t)

	svids, err := gsw.FetchX509SVIDs(ctx, gsw.WithAddr(e.addr))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range svids {
		got = append(got, s.ID.String()+"#"+s.Hint)
	}
	want := []string{"spiffe://example.org/older#internal", "spiffe://example.org/plain#"}
	if !slices.Equal(got, want) {
		t.Fatalf("X.509-SVIDs %q, want %q", got, want)
	}

	jwts, err := gsw.FetchJWTSVIDs(ctx, jwtsvid.Params{Audience: "a"}, gsw.WithAddr(e.addr))
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, s := range jwts {
		got = append(got, s.ID.String()+"#"+s.Hint)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("JWT-SVIDs %q, want %q", got, want)
	}
}

func TestBundlesIncludeFederated(t *testing.T) {
	en := newEntry("e1", "/web", mySelector())
	en.FederatesWith = []string{fedTD.Name()}
	e := start(t, en)
	fedCA := cachetest.NewCA(t, fedTD)
	e.u.Federated = map[spiffeid.TrustDomain]*spiffebundle.Bundle{fedTD: fedCA.Bundle()}
	e.apply()
	ctx := testContext(t)

	x509s, err := gsw.FetchX509Bundles(ctx, gsw.WithAddr(e.addr))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		td   spiffeid.TrustDomain
		root *x509.Certificate
	}{{td, e.ca.Cert()}, {fedTD, fedCA.Cert()}} {
		b, err := x509s.GetX509BundleForTrustDomain(tc.td)
		if err != nil {
			t.Fatal(err)
		}
		if !b.HasX509Authority(tc.root) {
			t.Errorf("X.509 bundle of %s lacks its root", tc.td)
		}
	}

	jwts, err := gsw.FetchJWTBundles(ctx, gsw.WithAddr(e.addr))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		td  spiffeid.TrustDomain
		kid string
	}{{td, e.ca.JWTKeyID()}, {fedTD, fedCA.JWTKeyID()}} {
		b, err := jwts.GetJWTBundleForTrustDomain(tc.td)
		if err != nil {
			t.Fatal(err)
		}
		if !b.HasJWTAuthority(tc.kid) {
			t.Errorf("JWT bundle of %s lacks key %s", tc.td, tc.kid)
		}
	}

	xctx, err := gsw.FetchX509Context(ctx, gsw.WithAddr(e.addr))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xctx.Bundles.GetX509BundleForTrustDomain(fedTD); err != nil {
		t.Fatalf("X.509 context lacks the federated bundle: %v", err)
	}
}

func TestJWTSVIDRoundTrip(t *testing.T) {
	e := start(t, newEntry("e1", "/web", mySelector()))
	ctx := testContext(t)

	svid, err := gsw.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "spiffe://example.org/db", ExtraAudiences: []string{"other"}}, gsw.WithAddr(e.addr))
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != "spiffe://example.org/web" {
		t.Fatalf("JWT-SVID ID %s", svid.ID)
	}

	// The cached token is served again.
	again, err := gsw.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "other", ExtraAudiences: []string{"spiffe://example.org/db"}}, gsw.WithAddr(e.addr))
	if err != nil {
		t.Fatal(err)
	}
	if again.Marshal() != svid.Marshal() || e.ca.Mints() != 1 {
		t.Fatalf("token not served from the cache (%d mints)", e.ca.Mints())
	}

	validated, err := gsw.ValidateJWTSVID(ctx, svid.Marshal(), "spiffe://example.org/db", gsw.WithAddr(e.addr))
	if err != nil {
		t.Fatal(err)
	}
	if validated.ID != svid.ID || !slices.Contains(validated.Audience, "other") {
		t.Fatalf("validated %s %q", validated.ID, validated.Audience)
	}

	// The raw response carries the claims, aud as a list.
	client := e.rawClient()
	resp, err := client.ValidateJWTSVID(withHeader(ctx), &workload.ValidateJWTSVIDRequest{Audience: "other", Svid: svid.Marshal()})
	if err != nil {
		t.Fatal(err)
	}
	if resp.SpiffeId != "spiffe://example.org/web" || resp.Claims.Fields["sub"].GetStringValue() != resp.SpiffeId {
		t.Fatalf("response %v", resp)
	}
	if aud := resp.Claims.Fields["aud"].GetListValue(); aud == nil || len(aud.Values) != 2 {
		t.Fatalf("aud claim %v", resp.Claims.Fields["aud"])
	}

	_, err = gsw.ValidateJWTSVID(ctx, svid.Marshal(), "not-an-audience", gsw.WithAddr(e.addr))
	wantCode(t, err, codes.InvalidArgument)

	// A token from a trust domain the workload does not federate with.
	stranger := cachetest.NewCA(t, fedTD)
	token, _, err := stranger.MintJWTSVID(ctx, spiffeid.RequireFromPath(fedTD, "/x"), []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = gsw.ValidateJWTSVID(ctx, token, "a", gsw.WithAddr(e.addr))
	wantCode(t, err, codes.InvalidArgument)
}

func TestFetchJWTSVIDArguments(t *testing.T) {
	e := start(t, newEntry("e1", "/web", mySelector()), newEntry("e2", "/not-mine", otherSelector()))
	ctx := withHeader(testContext(t))
	client := e.rawClient()

	tests := []struct {
		name string
		req  *workload.JWTSVIDRequest
		code codes.Code
		want []string
	}{
		{"no audience", &workload.JWTSVIDRequest{}, codes.InvalidArgument, nil},
		{"empty audience", &workload.JWTSVIDRequest{Audience: []string{""}}, codes.InvalidArgument, nil},
		{"bad SPIFFE ID", &workload.JWTSVIDRequest{Audience: []string{"a"}, SpiffeId: "not an id"}, codes.InvalidArgument, nil},
		{"not my SPIFFE ID", &workload.JWTSVIDRequest{Audience: []string{"a"}, SpiffeId: "spiffe://example.org/not-mine"}, codes.PermissionDenied, nil},
		{"my SPIFFE ID", &workload.JWTSVIDRequest{Audience: []string{"a"}, SpiffeId: "spiffe://example.org/web"}, codes.OK, []string{"spiffe://example.org/web"}},
		{"all", &workload.JWTSVIDRequest{Audience: []string{"a"}}, codes.OK, []string{"spiffe://example.org/web"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.FetchJWTSVID(ctx, tt.req)
			wantCode(t, err, tt.code)
			var got []string
			for _, s := range resp.GetSvids() {
				got = append(got, s.SpiffeId)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestListen(t *testing.T) {
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "api.sock")

	// A stale socket left by a crashed agent is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	l, err := workloadapi.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o777 {
		t.Errorf("socket mode %v, want 0777", fi.Mode().Perm())
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	l.Close()

	// Anything else is left alone.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := workloadapi.Listen(file); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Fatal("regular file damaged")
	}
}

func TestNewValidatesConfig(t *testing.T) {
	c := cache.New(td)
	for _, cfg := range []workloadapi.Config{
		{Attestor: unix.New(), TrustDomain: td},
		{Cache: c, TrustDomain: td},
		{Cache: c, Attestor: unix.New()},
	} {
		if _, err := workloadapi.New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestAllowUnauthenticatedVerifiers(t *testing.T) {
	e := startWith(t, func(c *workloadapi.Config) { c.AllowUnauthenticatedVerifiers = true },
		newEntry("e1", "/someone-else", otherSelector()))
	ctx := testContext(t)

	x509s, err := gsw.FetchX509Bundles(ctx, gsw.WithAddr(e.addr))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := x509s.GetX509BundleForTrustDomain(td); err != nil || !b.HasX509Authority(e.ca.Cert()) {
		t.Fatalf("own bundle not delivered: %v", err)
	}
	if _, err := gsw.FetchJWTBundles(ctx, gsw.WithAddr(e.addr)); err != nil {
		t.Fatal(err)
	}
	// Still no SVIDs.
	_, err = gsw.FetchX509SVID(ctx, gsw.WithAddr(e.addr))
	wantCode(t, err, codes.PermissionDenied)
}

type failingAttestor struct{ err error }

func (a failingAttestor) Attest(context.Context, int32) ([]*types.Selector, error) { return nil, a.err }

func TestAttestationFailure(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code codes.Code
	}{
		{"plain error", errors.New("cannot read /proc"), codes.Internal},
		{"status error", status.Error(codes.Unavailable, "attestor busy"), codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startWith(t, func(c *workloadapi.Config) { c.Attestor = failingAttestor{tt.err} },
				newEntry("e1", "/web", mySelector()))
			ctx := testContext(t)
			_, err := gsw.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"}, gsw.WithAddr(e.addr))
			wantCode(t, err, tt.code)
		})
	}
}
