// Package e2e runs Signet end to end: a real server on embedded etcd, a real
// agent, and go-spiffe v2 as the workload, over real sockets.
package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/signet-id/signet/conformance/svidspec"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGoSpiffeEndToEnd(t *testing.T) {
	dir := shortDir(t)
	srv := startServer(t, dir)
	token := srv.token(t, 600)
	me := spiffeid.RequireFromPath(td, "/workload/me")
	entry := srv.createEntry(t, me, agentIDFor(token), uidSelector(os.Getuid()))
	ag := startAgent(t, srv, dir, token)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+ag.socket)))
	if err != nil {
		t.Fatalf("NewX509Source: %v", err)
	}
	defer src.Close()
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID != me {
		t.Fatalf("SVID ID %v, want %v", svid.ID, me)
	}
	if err := svidspec.CheckX509SVID(svid.Certificates); err != nil {
		t.Fatal(err)
	}
	b, err := src.GetX509BundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, b); err != nil {
		t.Fatalf("chain does not verify against the bundle: %v", err)
	}
	for _, c := range b.X509Authorities() {
		if err := svidspec.CheckCA(c); err != nil {
			t.Fatal(err)
		}
	}

	// JWT-SVID: fetch, check the spec, validate through the agent and locally.
	jwt, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"}, workloadapi.WithAddr("unix://"+ag.socket))
	if err != nil {
		t.Fatalf("FetchJWTSVID: %v", err)
	}
	if err := svidspec.CheckJWTSVID(jwt.Marshal()); err != nil {
		t.Fatal(err)
	}
	if jwt.ID != me || len(jwt.Audience) != 1 || jwt.Audience[0] != "db" {
		t.Fatalf("JWT-SVID claims: id %v aud %v", jwt.ID, jwt.Audience)
	}
	if got := time.Until(jwt.Expiry); got > 5*time.Minute || got < 4*time.Minute {
		t.Fatalf("JWT-SVID expires in %v, want ~5m", got)
	}
	v, err := workloadapi.ValidateJWTSVID(ctx, jwt.Marshal(), "db", workloadapi.WithAddr("unix://"+ag.socket))
	if err != nil {
		t.Fatalf("ValidateJWTSVID: %v", err)
	}
	if v.ID != me {
		t.Fatalf("validated ID %v", v.ID)
	}
	// The wrong audience, with the raw client: go-spiffe's client checks the
	// audience itself, so only a raw call shows that the agent refuses.
	rawConn, err := grpc.NewClient("unix://"+ag.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer rawConn.Close()
	_, err = workload.NewSpiffeWorkloadAPIClient(rawConn).ValidateJWTSVID(metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true"),
		&workload.ValidateJWTSVIDRequest{Audience: "other", Svid: jwt.Marshal()})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("JWT-SVID for the wrong audience: got %v, want InvalidArgument", err)
	}

	// Renewal: changing the entry (shorter TTL) makes the agent re-issue;
	// the open source sees the new SVID without reconnecting.
	before := svid.Certificates[0].SerialNumber
	_, err = entryv1.NewEntryClient(srv.admin).BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{
		Entries:   []*types.Entry{{Id: entry.Id, X509SvidTtl: 120}},
		InputMask: &types.EntryMask{X509SvidTtl: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "renewed SVID", func() bool {
		s, err := src.GetX509SVID()
		return err == nil && s.Certificates[0].SerialNumber.Cmp(before) != 0
	})
	s2, _ := src.GetX509SVID()
	if life := s2.Certificates[0].NotAfter.Sub(s2.Certificates[0].NotBefore); life > 3*time.Minute {
		t.Fatalf("renewed SVID lifetime %v, want the entry's 120s (+ backdating)", life)
	}
}

func TestEntryPropagationToOpenStream(t *testing.T) {
	dir := shortDir(t)
	srv := startServer(t, dir)
	token := srv.token(t, 600)
	first := spiffeid.RequireFromPath(td, "/workload/first")
	srv.createEntry(t, first, agentIDFor(token), uidSelector(os.Getuid()))
	ag := startAgent(t, srv, dir, token)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+ag.socket))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	updates := make(chan *workloadapi.X509Context, 16)
	go func() {
		_ = client.WatchX509Context(ctx, watcher{updates})
	}()
	waitUpdate := func(want int) time.Time {
		for {
			select {
			case u := <-updates:
				if len(u.SVIDs) == want {
					return time.Now()
				}
			case <-ctx.Done():
				t.Fatalf("no update with %d SVIDs", want)
			}
		}
	}
	waitUpdate(1)
	var durations []time.Duration
	for i := 0; i < 5; i++ {
		id := spiffeid.RequireFromSegments(td, "workload", "extra", string(rune('a'+i)))
		start := time.Now()
		srv.createEntry(t, id, agentIDFor(token), uidSelector(os.Getuid()))
		got := waitUpdate(2 + i)
		durations = append(durations, got.Sub(start))
	}
	sort.Slice(durations, func(i, j int) bool { return durations[i] < durations[j] })
	// That push (not the poll) delivers entries is asserted by
	// agent.TestEntryPushReachesAgent; this test only measures.
	t.Logf("entry created -> SVID on open stream: min %v, median %v, max %v (n=%d, agent poll interval 5s)", durations[0], durations[len(durations)/2], durations[len(durations)-1], len(durations))
}

type watcher struct{ ch chan *workloadapi.X509Context }

func (w watcher) OnX509ContextUpdate(c *workloadapi.X509Context) { w.ch <- c }
func (w watcher) OnX509ContextWatchError(error)                  {}

func TestWorkloadAPINegative(t *testing.T) {
	dir := shortDir(t)
	srv := startServer(t, dir)
	token := srv.token(t, 600)
	// An entry for another uid only: this process has no identity.
	srv.createEntry(t, spiffeid.RequireFromPath(td, "/other"), agentIDFor(token), uidSelector(os.Getuid()+4242))
	ag := startAgent(t, srv, dir, token)
	waitFor(t, 30*time.Second, "agent sync", func() bool { return !ag.AgentID().IsZero() })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+ag.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wl := workload.NewSpiffeWorkloadAPIClient(conn)

	// Missing security header.
	stream, err := wl.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("missing header: %v, want InvalidArgument", err)
	}
	// Wrong uid: PermissionDenied.
	hctx := metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
	stream, err = wl.FetchX509SVID(hctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("no matching entry: %v, want PermissionDenied", err)
	}
	if _, err := wl.FetchJWTSVID(hctx, &workload.JWTSVIDRequest{Audience: []string{"x"}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("JWT with no matching entry: %v, want PermissionDenied", err)
	}
}

func TestJoinTokenRefusals(t *testing.T) {
	dir := shortDir(t)
	srv := startServer(t, dir)
	token := srv.token(t, 600)
	rawAgent(t, srv, token)

	roots := srv.CA().Bundle().X509Authorities()
	pool := x509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	conn := dialTLS(t, srv, pool)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)

	// Reused token.
	if _, err := attestWith(conn, token, csr); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("reused token: %v, want InvalidArgument", err)
	}
	// Unknown token.
	if _, err := attestWith(conn, "no-such-token", csr); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("unknown token: %v, want InvalidArgument", err)
	}
	// Expired token.
	short := srv.token(t, 1)
	time.Sleep(1100 * time.Millisecond)
	if _, err := attestWith(conn, short, csr); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("expired token: %v, want InvalidArgument", err)
	}
	// Malformed CSR.
	fresh := srv.token(t, 600)
	if _, err := attestWith(conn, fresh, []byte("garbage")); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad CSR: %v, want InvalidArgument", err)
	}
	// The token was not consumed by the rejected attempt.
	if _, err := attestWith(conn, fresh, csr); err != nil {
		t.Fatalf("token unusable after a rejected attempt: %v", err)
	}
}

func TestAgentAuthorization(t *testing.T) {
	dir := shortDir(t)
	srv := startServer(t, dir)
	tokA, tokB := srv.token(t, 600), srv.token(t, 600)
	connA, idA := rawAgent(t, srv, tokA)
	_, idB := rawAgent(t, srv, tokB)
	entryA := srv.createEntry(t, spiffeid.RequireFromPath(td, "/a"), idA, uidSelector(1))
	entryB := srv.createEntry(t, spiffeid.RequireFromPath(td, "/b"), idB, uidSelector(1))

	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	svc := svidv1.NewSVIDClient(connA)
	waitFor(t, 10*time.Second, "entry visible to agent A", func() bool {
		r, err := entryv1.NewEntryClient(connA).GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{})
		return err == nil && len(r.Entries) == 1 && r.Entries[0].Id == entryA.Id
	})
	resp, err := svc.BatchNewX509SVID(ctx, &svidv1.BatchNewX509SVIDRequest{Params: []*svidv1.NewX509SVIDParams{
		{EntryId: entryA.Id, Csr: csr},
		{EntryId: entryB.Id, Csr: csr},
		{EntryId: "missing", Csr: csr},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []codes.Code{codes.OK, codes.NotFound, codes.NotFound}
	for i, r := range resp.Results {
		if got := codes.Code(r.Status.Code); got != want[i] {
			t.Errorf("result %d: %v %s, want %v", i, got, r.Status.Message, want[i])
		}
	}
	if _, err := svc.NewJWTSVID(ctx, &svidv1.NewJWTSVIDRequest{EntryId: entryB.Id, Audience: []string{"x"}}); status.Code(err) != codes.NotFound {
		t.Fatalf("JWT for another agent's entry: %v, want NotFound", err)
	}

	// Admin RPCs are refused on the agent port, for agents and for
	// unauthenticated callers.
	pool := x509.NewCertPool()
	for _, c := range srv.CA().Bundle().X509Authorities() {
		pool.AddCert(c)
	}
	anon := dialTLS(t, srv, pool)
	for name, c := range map[string]*grpc.ClientConn{"agent": connA, "anonymous": anon} {
		if _, err := agentv1.NewAgentClient(c).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 60}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s CreateJoinToken: %v, want PermissionDenied", name, err)
		}
		if _, err := entryv1.NewEntryClient(c).ListEntries(ctx, &entryv1.ListEntriesRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s ListEntries: %v, want PermissionDenied", name, err)
		}
		if _, err := svidv1.NewSVIDClient(c).MintJWTSVID(ctx, &svidv1.MintJWTSVIDRequest{Id: protoID(idA), Audience: []string{"x"}}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s MintJWTSVID: %v, want PermissionDenied", name, err)
		}
	}
	if _, err := entryv1.NewEntryClient(anon).GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("anonymous GetAuthorizedEntries: %v, want PermissionDenied", err)
	}
	// Anyone may read the bundle.
	if _, err := bundlev1.NewBundleClient(anon).GetBundle(ctx, &bundlev1.GetBundleRequest{}); err != nil {
		t.Errorf("anonymous GetBundle: %v", err)
	}

	// Evicted agents are refused.
	if _, err := agentv1.NewAgentClient(srv.admin).DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: protoID(idA)}); err != nil {
		t.Fatal(err)
	}
	if _, err := entryv1.NewEntryClient(connA).GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("evicted agent: %v, want PermissionDenied", err)
	}
}

func TestAdminValidation(t *testing.T) {
	dir := shortDir(t)
	srv := startServer(t, dir)
	ctx := context.Background()
	ec := entryv1.NewEntryClient(srv.admin)
	parent := spiffeid.RequireFromPath(td, "/spire/agent/x")
	bad := []*types.Entry{
		{SpiffeId: &types.SPIFFEID{TrustDomain: "example.org", Path: "no-slash"}, ParentId: protoID(parent), Selectors: []*types.Selector{uidSelector(1)}},
		{SpiffeId: &types.SPIFFEID{TrustDomain: "Bad Domain", Path: "/w"}, ParentId: protoID(parent), Selectors: []*types.Selector{uidSelector(1)}},
		{SpiffeId: protoID(spiffeid.RequireFromPath(td, "/w")), ParentId: protoID(parent), Selectors: []*types.Selector{{Type: "", Value: "x"}}},
		{SpiffeId: protoID(spiffeid.RequireFromPath(td, "/w")), ParentId: protoID(parent), Selectors: []*types.Selector{{Type: "unix", Value: ""}}},
		{SpiffeId: protoID(spiffeid.RequireFromPath(td, "/w")), ParentId: protoID(parent)},
	}
	resp, err := ec.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: bad})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.Results {
		if codes.Code(r.Status.Code) != codes.InvalidArgument || r.Status.Message == "" {
			t.Errorf("bad entry %d: %v %q, want InvalidArgument with a message", i, codes.Code(r.Status.Code), r.Status.Message)
		}
	}
	n, err := ec.CountEntries(ctx, &entryv1.CountEntriesRequest{})
	if err != nil || n.Count != 0 {
		t.Fatalf("state changed after rejected creates: count %v, err %v", n.GetCount(), err)
	}
	sc := svidv1.NewSVIDClient(srv.admin)
	if _, err := sc.MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: []byte("nope")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("MintX509SVID bad CSR: %v", err)
	}
	if _, err := sc.MintJWTSVID(ctx, &svidv1.MintJWTSVIDRequest{Id: &types.SPIFFEID{TrustDomain: "example.org", Path: "bad path"}, Audience: []string{"a"}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("MintJWTSVID bad ID: %v", err)
	}
	if _, err := agentv1.NewAgentClient(srv.admin).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("CreateJoinToken without ttl: %v", err)
	}
}

func TestRestartKeepsState(t *testing.T) {
	dir := shortDir(t)
	srv := startServer(t, dir)
	token := srv.token(t, 600)
	me := spiffeid.RequireFromPath(td, "/workload/me")
	srv.createEntry(t, me, agentIDFor(token), uidSelector(os.Getuid()))
	ag := startAgent(t, srv, dir, token)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr := workloadapi.WithAddr("unix://" + ag.socket)
	first, err := workloadapi.FetchX509SVID(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	bundleBefore := srv.CA().Bundle()

	// Server restart: same bundle, entries and agents.
	srv.stop()
	srv2 := startServer(t, dir)
	if !srv2.CA().Bundle().Equal(bundleBefore) {
		t.Fatal("bundle changed across server restart")
	}
	ents, err := entryv1.NewEntryClient(srv2.admin).ListEntries(ctx, &entryv1.ListEntriesRequest{})
	if err != nil || len(ents.Entries) != 1 {
		t.Fatalf("entries after restart: %v %v", ents, err)
	}
	agents, err := agentv1.NewAgentClient(srv2.admin).ListAgents(ctx, &agentv1.ListAgentsRequest{})
	if err != nil || len(agents.Agents) != 1 {
		t.Fatalf("agents after restart: %v %v", agents, err)
	}

	// Agent restart with the server down: cached SVIDs are served at once.
	srv2.stop()
	ag.stop()
	ag2 := startAgent(t, srv2, dir, "")
	got, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+ag2.socket))
	if err != nil {
		t.Fatalf("restarted agent without server: %v", err)
	}
	if got.ID != me || !got.Certificates[0].Equal(first.Certificates[0]) {
		t.Fatalf("restarted agent served %v, want the cached SVID of %v", got.ID, me)
	}
}
