package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/agent"
	notifyv1 "github.com/signet-id/signet/proto/signet/notify/v1"
	"github.com/signet-id/signet/server/limits"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func dialAdmin(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func testCSR(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// Attack: an attested agent asks for SVIDs as fast as it can. After the
// burst, BatchNewX509SVID and NewJWTSVID are ResourceExhausted naming the
// limit.
func TestAttackSigningFloodFromAnAgent(t *testing.T) {
	const burst = 5
	srv := startLimitedServer(t, limits.Config{SignBurst: burst, Clock: frozen()})
	conn, agentID := rawAgent(t, srv, srv.token(t, 600))
	e := srv.createEntry(t, spiffeid.RequireFromPath(td, "/flood"), agentID, uidSelector(1))
	c := svidv1.NewSVIDClient(conn)
	ctx := context.Background()
	for i := range burst {
		resp, err := c.BatchNewX509SVID(ctx, &svidv1.BatchNewX509SVIDRequest{Params: []*svidv1.NewX509SVIDParams{{EntryId: e.Id, Csr: testCSR(t)}}})
		if err != nil || codes.Code(resp.Results[0].Status.Code) != codes.OK {
			t.Fatalf("SVID %d within the burst: %v %v", i, err, resp.GetResults())
		}
	}
	_, err := c.BatchNewX509SVID(ctx, &svidv1.BatchNewX509SVIDRequest{Params: []*svidv1.NewX509SVIDParams{{EntryId: e.Id, Csr: testCSR(t)}}})
	wantRefusal(t, "X.509-SVID after the burst", err, codes.ResourceExhausted, "sign_rate")
	t.Logf("SVID %d: %v", burst+1, err)
	_, err = c.NewJWTSVID(ctx, &svidv1.NewJWTSVIDRequest{EntryId: e.Id, Audience: []string{"a"}})
	wantRefusal(t, "JWT-SVID after the burst", err, codes.ResourceExhausted, "sign_rate")
	// Another agent has its own budget.
	conn2, agent2 := rawAgent(t, srv, srv.token(t, 600))
	e2 := srv.createEntry(t, spiffeid.RequireFromPath(td, "/other"), agent2, uidSelector(1))
	// One batch larger than the burst is refused whole (it would sign more
	// than the rate allows if charged only the burst) and costs nothing.
	big := &svidv1.BatchNewX509SVIDRequest{}
	for range burst + 1 {
		big.Params = append(big.Params, &svidv1.NewX509SVIDParams{EntryId: e2.Id, Csr: testCSR(t)})
	}
	_, err = svidv1.NewSVIDClient(conn2).BatchNewX509SVID(ctx, big)
	wantRefusal(t, "batch larger than the burst", err, codes.ResourceExhausted, "sign_burst")
	if _, err := svidv1.NewSVIDClient(conn2).NewJWTSVID(ctx, &svidv1.NewJWTSVIDRequest{EntryId: e2.Id, Audience: []string{"a"}}); err != nil {
		t.Fatalf("another agent: %v", err)
	}
}

// Attack: an agent opens Watch after Watch (3001 were held for one agent).
// Each new one ends the previous one.
func TestAttackSecondWatchClosesTheFirst(t *testing.T) {
	srv := startLimitedServer(t, limits.Config{})
	conn, _ := rawAgent(t, srv, srv.token(t, 600))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := notifyv1.NewNotifierClient(conn)
	var streams []notifyv1.Notifier_WatchClient
	for range 3 {
		s, err := c.Watch(ctx, &notifyv1.WatchRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatalf("hello: %v", err)
		}
		streams = append(streams, s)
	}
	for i, s := range streams[:2] {
		// Notifications already queued for the older stream (an entry or
		// bundle change) may still arrive; the stream must then end
		// (bounded by ctx).
		var err error
		for err == nil {
			_, err = s.Recv()
		}
		wantRefusal(t, fmt.Sprintf("Watch %d after a newer one", i), err, codes.ResourceExhausted, "one Watch per agent")
	}
}

// Attack (admin input, finding 10): a join token whose alias is the
// server's ID would hand the node the server's identity. Reserved IDs are
// refused for aliases, entries and mints.
func TestAttackReservedIDsRefused(t *testing.T) {
	srv := startLimitedServer(t, limits.Config{})
	ctx := context.Background()
	for _, path := range []string{"/spire/server", "/spire/agent/join_token/other", "/spire"} {
		_, err := agentv1.NewAgentClient(srv.admin).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 600, AgentId: protoID(spiffeid.RequireFromPath(td, path))})
		wantRefusal(t, "alias "+path, err, codes.InvalidArgument, "reserved namespace")
	}
	sv := svidv1.NewSVIDClient(srv.admin)
	_, err := sv.MintJWTSVID(ctx, &svidv1.MintJWTSVIDRequest{Id: protoID(spiffeid.RequireFromPath(td, "/spire/server")), Audience: []string{"a"}})
	wantRefusal(t, "MintJWTSVID /spire/server", err, codes.InvalidArgument, "reserved namespace")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://" + td.Name() + "/spire/agent/join_token/x")
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	_, err = sv.MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: csr})
	wantRefusal(t, "MintX509SVID agent ID", err, codes.InvalidArgument, "reserved namespace")
}

// Admin input (finding 16): lifetimes are bounded.
func TestLifetimesAreBounded(t *testing.T) {
	srv := startLimitedServer(t, limits.Config{})
	ctx := context.Background()
	ac := agentv1.NewAgentClient(srv.admin)
	_, err := ac.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: math.MaxInt32})
	wantRefusal(t, "join token ttl MaxInt32", err, codes.InvalidArgument, "maximum join token lifetime of 86400")
	_, err = ac.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 600, Token: "a"})
	wantRefusal(t, "1-character custom token", err, codes.InvalidArgument, "at least 16")
	if _, err := ac.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 86400, Token: "sixteen-chars-ok"}); err != nil {
		t.Fatalf("token at the limits: %v", err)
	}

	resp, err := svidv1.NewSVIDClient(srv.admin).MintJWTSVID(ctx, &svidv1.MintJWTSVIDRequest{Id: protoID(spiffeid.RequireFromPath(td, "/w")), Audience: []string{"a"}, Ttl: math.MaxInt32})
	if err != nil {
		t.Fatal(err)
	}
	var keyExpiry time.Time
	for _, s := range srv.CA().JWTSlots() {
		if s.Status == "active" {
			keyExpiry = s.NotAfter
		}
	}
	exp := time.Unix(resp.Svid.ExpiresAt, 0)
	t.Logf("MintJWTSVID ttl MaxInt32: exp %s, JWT key expires %s", exp.UTC().Format(time.RFC3339), keyExpiry.UTC().Format(time.RFC3339))
	if keyExpiry.IsZero() || exp.After(keyExpiry) {
		t.Fatalf("JWT-SVID exp %s outlives the JWT key (%s)", exp, keyExpiry)
	}

	agent := spiffeid.RequireFromPath(td, "/spire/agent/x")
	for _, tc := range []struct {
		name  string
		entry *types.Entry
		want  string
	}{
		{"x509 ttl 1", &types.Entry{X509SvidTtl: 1}, "below the minimum of 60"},
		{"jwt ttl 59", &types.Entry{JwtSvidTtl: 59}, "below the minimum of 60"},
		{"jwt ttl MaxInt32", &types.Entry{JwtSvidTtl: math.MaxInt32}, "exceeds the CA lifetime"},
	} {
		e := tc.entry
		e.SpiffeId, e.ParentId, e.Selectors = protoID(spiffeid.RequireFromPath(td, "/ttl")), protoID(agent), []*types.Selector{uidSelector(1)}
		wantEntryRefused(t, srv, tc.name, e, tc.want)
	}
}

func wantEntryRefused(t *testing.T, srv *testServer, what string, e *types.Entry, want string) {
	t.Helper()
	resp, err := entryv1.NewEntryClient(srv.admin).BatchCreateEntry(context.Background(), &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{e}})
	if err == nil {
		st := resp.Results[0].Status
		err = status.Error(codes.Code(st.Code), st.Message)
	}
	wantRefusal(t, what, err, codes.InvalidArgument, want)
}

// Admin input (finding 17): sizes are bounded, each refusal naming the
// limit.
func TestInputSizesAreBounded(t *testing.T) {
	srv := startLimitedServer(t, limits.Config{})
	agent := protoID(spiffeid.RequireFromPath(td, "/spire/agent/x"))
	long := "/" + strings.Repeat("p", 2048-len("spiffe://"+td.Name())) // 2049 bytes in all
	base := func() *types.Entry {
		return &types.Entry{SpiffeId: protoID(spiffeid.RequireFromPath(td, "/w")), ParentId: agent, Selectors: []*types.Selector{uidSelector(1)}}
	}
	e := base()
	e.SpiffeId.Path = long
	wantEntryRefused(t, srv, "2049-byte spiffe_id", e, "longer than the SPIFFE limit of 2048 bytes")
	e = base()
	e.Selectors = []*types.Selector{{Type: "unix", Value: strings.Repeat("v", 1<<20)}}
	wantEntryRefused(t, srv, "1 MiB selector", e, "at most 2048")
	e = base()
	for i := range 65 {
		e.Selectors = append(e.Selectors, &types.Selector{Type: "unix", Value: fmt.Sprint("uid:", i+2)})
	}
	wantEntryRefused(t, srv, "66 selectors", e, "at most 64 per entry")
	e = base()
	for i := range 20000 {
		e.DnsNames = append(e.DnsNames, fmt.Sprintf("h%d.example.org", i))
	}
	wantEntryRefused(t, srv, "20000 DNS names", e, "at most 100 per entry")
	aud := make([]string, 10000)
	for i := range aud {
		aud[i] = fmt.Sprint("aud", i)
	}
	_, err := svidv1.NewSVIDClient(srv.admin).MintJWTSVID(context.Background(), &svidv1.MintJWTSVIDRequest{Id: protoID(spiffeid.RequireFromPath(td, "/w")), Audience: aud})
	wantRefusal(t, "10000 audiences", err, codes.InvalidArgument, "at most 32 per JWT-SVID")
	_, err = agentv1.NewAgentClient(srv.admin).GetAgent(context.Background(), &agentv1.GetAgentRequest{Id: &types.SPIFFEID{TrustDomain: td.Name(), Path: "/spire/agent" + long}})
	wantRefusal(t, "2049+-byte agent ID", err, codes.InvalidArgument, "2048 bytes")
}

// An entry's scheduled renewal renews that SVID only: the agent makes no
// full sync (no bundle and entry read, no check of every SVID) for it. With
// a 1 s TTL (now refused) that full sync ran every second forever.
func TestRenewalOfOneSVIDIsNotAFullSync(t *testing.T) {
	dir := shortDir(t)
	srv := startLimitedServer(t, limits.Config{})
	token := srv.token(t, 600)
	e := srv.createEntry(t, spiffeid.RequireFromPath(td, "/short"), agentIDFor(token), uidSelector(os.Getuid()))
	srv.createEntry(t, spiffeid.RequireFromPath(td, "/long"), agentIDFor(token), uidSelector(os.Getuid()+1))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	resp, err := entryv1.NewEntryClient(srv.admin).BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{
		Entries: []*types.Entry{{Id: e.Id, X509SvidTtl: 60}}, InputMask: &types.EntryMask{X509SvidTtl: true}})
	if err != nil || resp.Results[0].Status.Code != 0 {
		t.Fatal(err, resp.GetResults())
	}
	reg := prometheus.NewRegistry()
	a, err := agent.New(agent.Config{
		TrustDomain: td, ServerAddresses: []string{srv.AgentAddr().String()}, JoinToken: token,
		DataDir: filepath.Join(dir, "agent"), SocketPath: filepath.Join(dir, "wl.sock"),
		TrustBundle: srv.CA().Bundle().X509Authorities(), Logger: testLogger(t).With("component", "agent"),
		SyncInterval: time.Hour, Registry: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	t.Cleanup(func() { acancel(); <-done })
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("agent: %v", err)
	}
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+filepath.Join(dir, "wl.sock"))))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	first, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	// A full sync is still right when the server pushes an entry change
	// (the TTL update above can reach the agent's push stream after its
	// first sync) or when the session is reopened: those are counted and
	// allowed, nothing else.
	expected := func() float64 {
		return counterSum(t, reg, "signet_agent_push_notifications_total", "kind", "KIND_ENTRIES_CHANGED") +
			gatherValue(t, reg, "signet_agent_server_reconnects_total")
	}
	syncs, allowed := gatherValue(t, reg, "signet_agent_syncs_total"), expected()
	waitFor(t, 90*time.Second, "the 60 s SVID's renewal", func() bool {
		s, err := src.GetX509SVID()
		return err == nil && s.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) != 0
	})
	// The counter follows the SVID's publication.
	waitFor(t, 20*time.Second, "the due-only renewal to be counted", func() bool {
		return gatherValue(t, reg, "signet_agent_due_renewals_total") >= 1
	})
	due, after := gatherValue(t, reg, "signet_agent_due_renewals_total"), gatherValue(t, reg, "signet_agent_syncs_total")
	allowed = expected() - allowed
	t.Logf("renewed: %v due-only renewals, full syncs %v → %v, %v of them for entry pushes or reconnects", due, syncs, after, allowed)
	if due < 1 || after-syncs > allowed {
		t.Fatalf("renewal took %v full syncs (%v explained by entry pushes or reconnects) and %v due-only renewals, want none unexplained and at least 1 due-only", after-syncs, allowed, due)
	}
}

func gatherValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}
