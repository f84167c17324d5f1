package entry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/etcdserver/etcdtest"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

var testEtcd *etcdserver.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &testEtcd) }

const callerHeader = "x-test-caller"

// injectCaller turns the test's caller header ("agent <id>" or "admin")
// into a caller in the context, as the server's listeners would.
func injectCaller(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get(callerHeader) {
		kind, rawID, _ := strings.Cut(v, " ")
		switch kind {
		case "admin":
			return caller.NewContext(ctx, caller.Caller{Kind: caller.Admin, Local: true})
		case "agent":
			return caller.NewContext(ctx, caller.Caller{Kind: caller.Agent, ID: spiffeid.RequireFromString(rawID)})
		}
	}
	return ctx
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w wrappedStream) Context() context.Context { return w.ctx }

type env struct {
	td     spiffeid.TrustDomain
	store  *store.Store
	client entryv1.EntryClient
}

var tdCounter atomic.Int64

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString(fmt.Sprintf("entry%d.test", tdCounter.Add(1)))
	st, err := store.New(testEtcd.Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	cfg.TrustDomain, cfg.Store = td, st
	srv := grpc.NewServer(
		grpc.Creds(insecure.NewCredentials()),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(injectCaller(ctx), req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, wrappedStream{ss, injectCaller(ss.Context())})
		}),
	)
	entryv1.RegisterEntryServer(srv, New(cfg))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{td: td, store: st, client: entryv1.NewEntryClient(conn)}
}

func ctxAs(t *testing.T, who string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	if who == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, callerHeader, who)
}

func (e *env) id(path string) *types.SPIFFEID {
	return &types.SPIFFEID{TrustDomain: e.td.Name(), Path: path}
}

func sels(ss ...string) []*types.Selector {
	out := make([]*types.Selector, 0, len(ss))
	for _, s := range ss {
		typ, value, _ := strings.Cut(s, ":")
		out = append(out, &types.Selector{Type: typ, Value: value})
	}
	return out
}

func (e *env) entry(path, parent string, ss ...string) *types.Entry {
	return &types.Entry{SpiffeId: e.id(path), ParentId: e.id(parent), Selectors: sels(ss...)}
}

func (e *env) create(t *testing.T, entries ...*types.Entry) []*types.Entry {
	t.Helper()
	resp, err := e.client.BatchCreateEntry(ctxAs(t, "admin"), &entryv1.BatchCreateEntryRequest{Entries: entries})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*types.Entry, 0, len(entries))
	for i, r := range resp.Results {
		if r.Status.Code != int32(codes.OK) {
			t.Fatalf("create %d: %v", i, r.Status)
		}
		out = append(out, r.Entry)
	}
	return out
}

func (e *env) count(t *testing.T) int32 {
	t.Helper()
	resp, err := e.client.CountEntries(ctxAs(t, "admin"), &entryv1.CountEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

func assertStatus(t *testing.T, got *types.Status, code codes.Code, msg string) {
	t.Helper()
	if got.GetCode() != int32(code) || got.GetMessage() != msg {
		t.Fatalf("status = %v %q, want %v %q", codes.Code(got.GetCode()), got.GetMessage(), code, msg)
	}
}

func assertErr(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || st.Message() != msg {
		t.Fatalf("error = %v %q, want %v %q", st.Code(), st.Message(), code, msg)
	}
}

func assertProtoEqual(t *testing.T, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
}

func TestBatchCreateEntry(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := ctxAs(t, "admin")
	if _, err := e.store.CreateBundle(ctx, &types.Bundle{TrustDomain: "fed.test"}); err != nil {
		t.Fatal(err)
	}
	full := &types.Entry{
		Id: "custom-id", SpiffeId: e.id("/w"), ParentId: e.id("/spire/agent/a"), Selectors: sels("unix:uid:1"),
		X509SvidTtl: 3600, JwtSvidTtl: 300, FederatesWith: []string{"spiffe://fed.test"}, Admin: true, Downstream: true,
		ExpiresAt: 2000000000, DnsNames: []string{"w.example.org", "*.w.example.org"}, StoreSvid: true, Hint: "h",
	}
	resp, err := e.client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{full}})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.Results[0]
	assertStatus(t, r.Status, codes.OK, "OK")
	want := proto.Clone(full).(*types.Entry)
	want.FederatesWith = []string{"fed.test"}
	want.CreatedAt = r.Entry.CreatedAt
	assertProtoEqual(t, r.Entry, want)
	if r.Entry.CreatedAt == 0 {
		t.Fatal("created_at not set")
	}

	// Similar entry: AlreadyExists with the existing entry, output mask
	// applied.
	dup := proto.Clone(full).(*types.Entry)
	dup.Id, dup.Hint = "", "other"
	resp, err = e.client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{
		Entries:    []*types.Entry{dup},
		OutputMask: &types.EntryMask{Hint: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	assertStatus(t, resp.Results[0].Status, codes.AlreadyExists, "similar entry already exists")
	assertProtoEqual(t, resp.Results[0].Entry, &types.Entry{Id: "custom-id", Hint: "h"})

	// Same ID, different entry.
	sameID := e.entry("/other", "/spire/agent/a", "unix:uid:2")
	sameID.Id = "custom-id"
	resp, _ = e.client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{sameID}})
	assertStatus(t, resp.Results[0].Status, codes.AlreadyExists, `entry with ID "custom-id" already exists`)
	if resp.Results[0].Entry != nil {
		t.Fatal("entry returned for an ID collision")
	}

	// An empty output mask returns only the ID.
	resp, _ = e.client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{
		Entries: []*types.Entry{e.entry("/masked", "/spire/agent/a", "unix:uid:3")}, OutputMask: &types.EntryMask{},
	})
	assertStatus(t, resp.Results[0].Status, codes.OK, "OK")
	if got := resp.Results[0].Entry; got.Id == "" || got.SpiffeId != nil || got.CreatedAt != 0 {
		t.Fatalf("masked entry %v", got)
	}
}

func TestBatchCreateEntryInvalid(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := ctxAs(t, "admin")
	tests := []struct {
		name   string
		modify func(*types.Entry)
		code   codes.Code
		msg    string
	}{
		{"nil spiffe_id", func(x *types.Entry) { x.SpiffeId = nil }, codes.InvalidArgument, "invalid spiffe_id: request must specify a SPIFFE ID"},
		{"missing trust domain", func(x *types.Entry) { x.SpiffeId.TrustDomain = "" }, codes.InvalidArgument, "invalid spiffe_id: trust domain is missing"},
		{"bad trust domain chars", func(x *types.Entry) { x.SpiffeId.TrustDomain = "Bad" }, codes.InvalidArgument, "invalid spiffe_id: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"},
		{"path without slash", func(x *types.Entry) { x.SpiffeId.Path = "w" }, codes.InvalidArgument, "invalid spiffe_id: path must have a leading slash"},
		{"foreign trust domain", func(x *types.Entry) { x.SpiffeId.TrustDomain = "other.test" }, codes.InvalidArgument,
			fmt.Sprintf(`invalid spiffe_id: "spiffe://other.test/w" is not a member of trust domain %q`, e.td.Name())},
		{"empty path", func(x *types.Entry) { x.SpiffeId.Path = "" }, codes.InvalidArgument,
			fmt.Sprintf(`invalid spiffe_id: "spiffe://%s" is not a member of trust domain %q; path is empty`, e.td.Name(), e.td.Name())},
		{"reserved path", func(x *types.Entry) { x.SpiffeId.Path = "/spire/agent/x" }, codes.InvalidArgument,
			fmt.Sprintf(`invalid spiffe_id: "spiffe://%s/spire/agent/x" is not a workload in trust domain %q; path is in the reserved namespace`, e.td.Name(), e.td.Name())},
		{"nil parent_id", func(x *types.Entry) { x.ParentId = nil }, codes.InvalidArgument, "invalid parent_id: request must specify a SPIFFE ID"},
		{"parent dot segment", func(x *types.Entry) { x.ParentId.Path = "/a/../b" }, codes.InvalidArgument, "invalid parent_id: path cannot contain dot segments"},
		{"no selectors", func(x *types.Entry) { x.Selectors = nil }, codes.InvalidArgument, "invalid selectors: selector list is empty"},
		{"selector without type", func(x *types.Entry) { x.Selectors = sels(":v") }, codes.InvalidArgument, "invalid selectors: missing selector type"},
		{"selector without value", func(x *types.Entry) { x.Selectors = sels("unix:") }, codes.InvalidArgument, `invalid selectors: missing value for selector type "unix"`},
		{"colon in selector type", func(x *types.Entry) { x.Selectors = []*types.Selector{{Type: "a:b", Value: "c"}} }, codes.InvalidArgument, `invalid selectors: selector type "a:b" contains ':'`},
		{"store svid mixed types", func(x *types.Entry) { x.StoreSvid = true; x.Selectors = sels("a:1", "b:1") }, codes.InvalidArgument, "invalid selectors: selector types must be the same when store_svid is set"},
		{"negative x509 ttl", func(x *types.Entry) { x.X509SvidTtl = -1 }, codes.InvalidArgument, "invalid x509_svid_ttl: -1 is negative"},
		{"negative jwt ttl", func(x *types.Entry) { x.JwtSvidTtl = -5 }, codes.InvalidArgument, "invalid jwt_svid_ttl: -5 is negative"},
		{"bad dns name", func(x *types.Entry) { x.DnsNames = []string{"ok.example", "bad name.example"} }, codes.InvalidArgument, `invalid dns_names: "bad name.example": label "bad name" contains ' '`},
		{"empty dns name", func(x *types.Entry) { x.DnsNames = []string{""} }, codes.InvalidArgument, `invalid dns_names: "": empty or longer than 253 characters`},
		{"bad federates_with", func(x *types.Entry) { x.FederatesWith = []string{"Bad TD"} }, codes.InvalidArgument, `invalid federates_with: "Bad TD": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`},
		{"federates_with unknown bundle", func(x *types.Entry) { x.FederatesWith = []string{"nobundle.test"} }, codes.InvalidArgument, `failed to create entry: unable to find federated bundle "nobundle.test"`},
		{"long hint", func(x *types.Entry) { x.Hint = strings.Repeat("x", 1025) }, codes.InvalidArgument, "invalid hint: longer than 1024 characters"},
		{"bad id", func(x *types.Entry) { x.Id = "a/b" }, codes.InvalidArgument, `invalid id: "a/b" contains invalid characters (allowed: letters, digits, '-', '.', '_')`},
		{"long id", func(x *types.Entry) { x.Id = strings.Repeat("a", 256) }, codes.InvalidArgument, "invalid id: longer than 255 characters"},
	}
	// One batch: every bad item fails with its own status, the good items
	// around them succeed, and order is kept.
	var batch []*types.Entry
	for i, tt := range tests {
		good := e.entry(fmt.Sprintf("/good%d", i), "/spire/agent/a", "unix:uid:1")
		bad := e.entry("/w", "/spire/agent/a", "unix:uid:1")
		tt.modify(bad)
		batch = append(batch, good, bad)
	}
	resp, err := e.client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: batch})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != len(batch) {
		t.Fatalf("%d results for %d entries", len(resp.Results), len(batch))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good, bad := resp.Results[2*i], resp.Results[2*i+1]
			assertStatus(t, good.Status, codes.OK, "OK")
			if good.Entry.SpiffeId.Path != fmt.Sprintf("/good%d", i) {
				t.Fatalf("result order: %v", good.Entry)
			}
			assertStatus(t, bad.Status, tt.code, tt.msg)
			if bad.Entry != nil {
				t.Fatalf("entry returned with error: %v", bad.Entry)
			}
		})
	}
	// Only the good entries were stored.
	if n := e.count(t); n != int32(len(tests)) {
		t.Fatalf("%d entries stored, want %d", n, len(tests))
	}
}

func TestGetEntry(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := ctxAs(t, "admin")
	created := e.create(t, e.entry("/w", "/spire/agent/a", "unix:uid:1"))[0]
	got, err := e.client.GetEntry(ctx, &entryv1.GetEntryRequest{Id: created.Id})
	if err != nil {
		t.Fatal(err)
	}
	assertProtoEqual(t, got, created)
	got, err = e.client.GetEntry(ctx, &entryv1.GetEntryRequest{Id: created.Id, OutputMask: &types.EntryMask{SpiffeId: true}})
	if err != nil {
		t.Fatal(err)
	}
	assertProtoEqual(t, got, &types.Entry{Id: created.Id, SpiffeId: created.SpiffeId})

	_, err = e.client.GetEntry(ctx, &entryv1.GetEntryRequest{})
	assertErr(t, err, codes.InvalidArgument, "missing ID")
	_, err = e.client.GetEntry(ctx, &entryv1.GetEntryRequest{Id: "nope"})
	assertErr(t, err, codes.NotFound, "entry not found")
}

func TestListAndCountEntries(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := ctxAs(t, "admin")
	for _, td := range []string{"fed1.test", "fed2.test"} {
		if _, err := e.store.CreateBundle(ctx, &types.Bundle{TrustDomain: td}); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(path, parent string, fed []string, hint string, downstream bool, ss ...string) *types.Entry {
		x := e.entry(path, parent, ss...)
		x.FederatesWith, x.Hint, x.Downstream = fed, hint, downstream
		return x
	}
	created := e.create(t,
		mk("/a", "/spire/agent/1", []string{"fed1.test"}, "", false, "k:1", "k:2"),
		mk("/b", "/spire/agent/1", []string{"fed1.test", "fed2.test"}, "hint", false, "k:1"),
		mk("/c", "/spire/agent/2", nil, "hint", true, "k:2", "k:3"),
	)
	name := map[string]string{}
	for _, c := range created {
		name[c.Id] = c.SpiffeId.Path
	}
	paths := func(es []*types.Entry) []string {
		var out []string
		for _, x := range es {
			out = append(out, name[x.Id])
		}
		sort.Strings(out)
		return out
	}
	type filter = entryv1.ListEntriesRequest_Filter
	tests := []struct {
		name string
		f    *filter
		want []string
	}{
		{"nil", nil, []string{"/a", "/b", "/c"}},
		{"spiffe id", &filter{BySpiffeId: e.id("/b")}, []string{"/b"}},
		{"parent id", &filter{ByParentId: e.id("/spire/agent/1")}, []string{"/a", "/b"}},
		{"selectors exact", &filter{BySelectors: &types.SelectorMatch{Selectors: sels("k:1"), Match: types.SelectorMatch_MATCH_EXACT}}, []string{"/b"}},
		{"selectors subset", &filter{BySelectors: &types.SelectorMatch{Selectors: sels("k:1", "k:2"), Match: types.SelectorMatch_MATCH_SUBSET}}, []string{"/a", "/b"}},
		{"selectors superset", &filter{BySelectors: &types.SelectorMatch{Selectors: sels("k:2"), Match: types.SelectorMatch_MATCH_SUPERSET}}, []string{"/a", "/c"}},
		{"selectors any", &filter{BySelectors: &types.SelectorMatch{Selectors: sels("k:3", "k:1"), Match: types.SelectorMatch_MATCH_ANY}}, []string{"/a", "/b", "/c"}},
		{"federates exact", &filter{ByFederatesWith: &types.FederatesWithMatch{TrustDomains: []string{"fed1.test"}, Match: types.FederatesWithMatch_MATCH_EXACT}}, []string{"/a"}},
		{"federates subset", &filter{ByFederatesWith: &types.FederatesWithMatch{TrustDomains: []string{"spiffe://fed1.test", "fed2.test"}, Match: types.FederatesWithMatch_MATCH_SUBSET}}, []string{"/a", "/b"}},
		{"federates superset", &filter{ByFederatesWith: &types.FederatesWithMatch{TrustDomains: []string{"fed2.test"}, Match: types.FederatesWithMatch_MATCH_SUPERSET}}, []string{"/b"}},
		{"federates any", &filter{ByFederatesWith: &types.FederatesWithMatch{TrustDomains: []string{"fed2.test"}, Match: types.FederatesWithMatch_MATCH_ANY}}, []string{"/b"}},
		{"hint", &filter{ByHint: wrapperspb.String("hint")}, []string{"/b", "/c"}},
		{"empty hint matches all", &filter{ByHint: wrapperspb.String("")}, []string{"/a", "/b", "/c"}},
		{"downstream", &filter{ByDownstream: wrapperspb.Bool(true)}, []string{"/c"}},
		// SPIRE ignores by_downstream=false: it matches every entry.
		{"downstream false does not filter", &filter{ByDownstream: wrapperspb.Bool(false)}, []string{"/a", "/b", "/c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.client.ListEntries(ctx, &entryv1.ListEntriesRequest{Filter: tt.f})
			if err != nil {
				t.Fatal(err)
			}
			if got := paths(resp.Entries); !slices.Equal(got, tt.want) {
				t.Fatalf("list = %v, want %v", got, tt.want)
			}
			var cf *entryv1.CountEntriesRequest_Filter
			if tt.f != nil {
				cf = &entryv1.CountEntriesRequest_Filter{BySpiffeId: tt.f.BySpiffeId, ByParentId: tt.f.ByParentId, BySelectors: tt.f.BySelectors,
					ByFederatesWith: tt.f.ByFederatesWith, ByHint: tt.f.ByHint, ByDownstream: tt.f.ByDownstream}
			}
			cresp, err := e.client.CountEntries(ctx, &entryv1.CountEntriesRequest{Filter: cf})
			if err != nil {
				t.Fatal(err)
			}
			if cresp.Count != int32(len(tt.want)) {
				t.Fatalf("count = %d, want %d", cresp.Count, len(tt.want))
			}
		})
	}

	bad := []struct {
		name string
		f    *filter
		msg  string
	}{
		{"parent without trust domain", &filter{ByParentId: &types.SPIFFEID{Path: "/x"}}, "malformed parent ID filter: trust domain is missing"},
		{"foreign parent", &filter{ByParentId: &types.SPIFFEID{TrustDomain: "other.test", Path: "/x"}}, fmt.Sprintf(`malformed parent ID filter: "spiffe://other.test/x" is not a member of trust domain %q`, e.td.Name())},
		{"spiffe id without trust domain", &filter{BySpiffeId: &types.SPIFFEID{Path: "/x"}}, "malformed SPIFFE ID filter: trust domain is missing"},
		{"reserved spiffe id", &filter{BySpiffeId: e.id("/spire/server")}, fmt.Sprintf(`malformed SPIFFE ID filter: "spiffe://%s/spire/server" is not a workload in trust domain %q; path is in the reserved namespace`, e.td.Name(), e.td.Name())},
		{"empty selectors", &filter{BySelectors: &types.SelectorMatch{}}, "malformed selectors filter: empty selector set"},
		{"bad selector", &filter{BySelectors: &types.SelectorMatch{Selectors: sels(":1")}}, "malformed selectors filter: missing selector type"},
		{"bad selector match", &filter{BySelectors: &types.SelectorMatch{Selectors: sels("a:1"), Match: 9}}, "malformed selectors filter: unknown match behavior 9"},
		{"empty federates", &filter{ByFederatesWith: &types.FederatesWithMatch{}}, "malformed federates with filter: empty trust domain set"},
		{"bad federates", &filter{ByFederatesWith: &types.FederatesWithMatch{TrustDomains: []string{""}}}, "malformed federates with filter: trust domain is missing"},
		{"bad federates match", &filter{ByFederatesWith: &types.FederatesWithMatch{TrustDomains: []string{"a.test"}, Match: 7}}, "malformed federates with filter: unknown match behavior 7"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.ListEntries(ctx, &entryv1.ListEntriesRequest{Filter: tt.f})
			assertErr(t, err, codes.InvalidArgument, tt.msg)
			_, err = e.client.CountEntries(ctx, &entryv1.CountEntriesRequest{Filter: &entryv1.CountEntriesRequest_Filter{
				BySpiffeId: tt.f.BySpiffeId, ByParentId: tt.f.ByParentId, BySelectors: tt.f.BySelectors, ByFederatesWith: tt.f.ByFederatesWith}})
			assertErr(t, err, codes.InvalidArgument, tt.msg)
		})
	}

	// Output mask.
	resp, err := e.client.ListEntries(ctx, &entryv1.ListEntriesRequest{Filter: &filter{BySpiffeId: e.id("/a")}, OutputMask: &types.EntryMask{ParentId: true}})
	if err != nil {
		t.Fatal(err)
	}
	assertProtoEqual(t, resp.Entries[0], &types.Entry{Id: resp.Entries[0].Id, ParentId: e.id("/spire/agent/1")})
}

func TestListEntriesPagination(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := ctxAs(t, "admin")
	var batch []*types.Entry
	for i := range 17 {
		batch = append(batch, e.entry(fmt.Sprintf("/w%d", i), "/spire/agent/a", "unix:uid:1"))
	}
	e.create(t, batch...)
	for _, pageSize := range []int32{1, 4, 17, 50} {
		seen := map[string]int{}
		token := ""
		for range 20 {
			resp, err := e.client.ListEntries(ctx, &entryv1.ListEntriesRequest{PageSize: pageSize, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			if int32(len(resp.Entries)) > pageSize {
				t.Fatalf("page of %d > %d", len(resp.Entries), pageSize)
			}
			for _, x := range resp.Entries {
				seen[x.Id]++
			}
			if resp.NextPageToken == "" {
				break
			}
			token = resp.NextPageToken
		}
		if len(seen) != 17 {
			t.Fatalf("page size %d: saw %d entries", pageSize, len(seen))
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("page size %d: %s seen %d times", pageSize, id, n)
			}
		}
	}
}

func TestBatchUpdateEntry(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := ctxAs(t, "admin")
	created := e.create(t,
		e.entry("/a", "/spire/agent/1", "k:1"),
		e.entry("/b", "/spire/agent/1", "k:2"),
	)
	a, b := created[0], created[1]

	// Partial update via input mask: invalid values in unmasked fields are
	// ignored.
	resp, err := e.client.BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{
		Entries:    []*types.Entry{{Id: a.Id, Hint: "new", X509SvidTtl: -1, SpiffeId: &types.SPIFFEID{}}},
		InputMask:  &types.EntryMask{Hint: true},
		OutputMask: &types.EntryMask{Hint: true, RevisionNumber: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	assertStatus(t, resp.Results[0].Status, codes.OK, "OK")
	assertProtoEqual(t, resp.Results[0].Entry, &types.Entry{Id: a.Id, Hint: "new", RevisionNumber: 1})
	got, _ := e.client.GetEntry(ctx, &entryv1.GetEntryRequest{Id: a.Id})
	want := proto.Clone(a).(*types.Entry)
	want.Hint, want.RevisionNumber = "new", 1
	assertProtoEqual(t, got, want)

	// No input mask: every field is replaced (and validated).
	repl := e.entry("/a2", "/spire/agent/2", "k:9")
	repl.Id, repl.DnsNames = a.Id, []string{"a2.example.org"}
	resp, err = e.client.BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{Entries: []*types.Entry{repl}})
	if err != nil {
		t.Fatal(err)
	}
	assertStatus(t, resp.Results[0].Status, codes.OK, "OK")
	want = proto.Clone(repl).(*types.Entry)
	want.CreatedAt, want.RevisionNumber = a.CreatedAt, 2
	assertProtoEqual(t, resp.Results[0].Entry, want)

	before, _ := e.client.GetEntry(ctx, &entryv1.GetEntryRequest{Id: b.Id})
	results := []struct {
		name  string
		entry *types.Entry
		mask  *types.EntryMask
		code  codes.Code
		msg   string
	}{
		{"missing id", &types.Entry{Hint: "x"}, &types.EntryMask{Hint: true}, codes.NotFound, "entry not found: missing entry ID"},
		{"unknown id", &types.Entry{Id: "nope", Hint: "x"}, &types.EntryMask{Hint: true}, codes.NotFound, "entry not found"},
		{"bad masked spiffe id", &types.Entry{Id: b.Id, SpiffeId: &types.SPIFFEID{Path: "/x"}}, &types.EntryMask{SpiffeId: true}, codes.InvalidArgument, "invalid spiffe_id: trust domain is missing"},
		{"empty masked selectors", &types.Entry{Id: b.Id}, &types.EntryMask{Selectors: true}, codes.InvalidArgument, "invalid selectors: selector list is empty"},
		{"negative masked ttl", &types.Entry{Id: b.Id, JwtSvidTtl: -2}, &types.EntryMask{JwtSvidTtl: true}, codes.InvalidArgument, "invalid jwt_svid_ttl: -2 is negative"},
		{"unknown federated bundle", &types.Entry{Id: b.Id, FederatesWith: []string{"x.test"}}, &types.EntryMask{FederatesWith: true}, codes.InvalidArgument, `failed to update entry: unable to find federated bundle "x.test"`},
		{"store svid with mixed selectors", &types.Entry{Id: b.Id, StoreSvid: true, Selectors: sels("k:1", "j:1")}, &types.EntryMask{StoreSvid: true, Selectors: true}, codes.InvalidArgument, "invalid selectors: selector types must be the same when store_svid is set"},
		{"similar to another entry", &types.Entry{Id: b.Id, SpiffeId: e.id("/a2"), ParentId: e.id("/spire/agent/2"), Selectors: sels("k:9")}, &types.EntryMask{SpiffeId: true, ParentId: true, Selectors: true}, codes.AlreadyExists, "failed to update entry: similar entry already exists"},
	}
	for _, tt := range results {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.client.BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{Entries: []*types.Entry{tt.entry}, InputMask: tt.mask})
			if err != nil {
				t.Fatal(err)
			}
			assertStatus(t, resp.Results[0].Status, tt.code, tt.msg)
			if resp.Results[0].Entry != nil {
				t.Fatalf("entry returned with error: %v", resp.Results[0].Entry)
			}
		})
	}
	after, _ := e.client.GetEntry(ctx, &entryv1.GetEntryRequest{Id: b.Id})
	assertProtoEqual(t, after, before)
}

func TestBatchDeleteEntry(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := ctxAs(t, "admin")
	created := e.create(t, e.entry("/a", "/spire/agent/1", "k:1"), e.entry("/b", "/spire/agent/1", "k:2"))
	resp, err := e.client.BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: []string{created[0].Id, "nope", "", created[0].Id}})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id   string
		code codes.Code
		msg  string
	}{
		{created[0].Id, codes.OK, "OK"},
		{"nope", codes.NotFound, "entry not found"},
		{"", codes.InvalidArgument, "missing entry ID"},
		{created[0].Id, codes.NotFound, "entry not found"},
	}
	for i, w := range want {
		if resp.Results[i].Id != w.id {
			t.Fatalf("result %d id %q, want %q", i, resp.Results[i].Id, w.id)
		}
		assertStatus(t, resp.Results[i].Status, w.code, w.msg)
	}
	if n := e.count(t); n != 1 {
		t.Fatalf("%d entries left", n)
	}
}

func TestBatchTooLarge(t *testing.T) {
	e := newEnv(t, Config{MaxBatch: 2})
	ctx := ctxAs(t, "admin")
	three := []*types.Entry{e.entry("/a", "/spire/agent/1", "k:1"), e.entry("/b", "/spire/agent/1", "k:1"), e.entry("/c", "/spire/agent/1", "k:1")}
	_, err := e.client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: three})
	assertErr(t, err, codes.InvalidArgument, "too many entries in one batch: 3 > 2")
	_, err = e.client.BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{Entries: three})
	assertErr(t, err, codes.InvalidArgument, "too many entries in one batch: 3 > 2")
	_, err = e.client.BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: []string{"a", "b", "c"}})
	assertErr(t, err, codes.InvalidArgument, "too many entries in one batch: 3 > 2")
	if n := e.count(t); n != 0 {
		t.Fatalf("%d entries created by a rejected batch", n)
	}
}

// authorizedEnv has an agent with direct, nested and alias-derived entries.
func authorizedEnv(t *testing.T, cfg Config, extra int) (*env, string, []string) {
	e := newEnv(t, cfg)
	ctx := ctxAs(t, "admin")
	agentID := "spiffe://" + e.td.Name() + "/spire/agent/node1"
	if _, err := e.store.CreateAgent(ctx, &types.Agent{Id: e.id("/spire/agent/node1"), Selectors: sels("cluster:prod", "node:1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.CreateAgent(ctx, &types.Agent{Id: e.id("/spire/agent/node2")}); err != nil {
		t.Fatal(err)
	}
	entries := []*types.Entry{
		e.entry("/direct", "/spire/agent/node1", "u:1"),
		e.entry("/nested", "/direct", "u:2"),
		e.entry("/prod", "/spire/server", "cluster:prod"),
		e.entry("/via-alias", "/prod", "u:3"),
		e.entry("/other", "/spire/agent/node2", "u:4"),
	}
	for i := range extra {
		entries = append(entries, e.entry(fmt.Sprintf("/extra%d", i), "/spire/agent/node1", "u:5"))
	}
	var want []string
	for _, c := range e.create(t, entries...) {
		switch c.SpiffeId.Path {
		case "/prod", "/other":
		default:
			want = append(want, c.Id)
		}
	}
	sort.Strings(want)
	return e, agentID, want
}

func ids(es []*types.Entry) []string {
	var out []string
	for _, x := range es {
		out = append(out, x.Id)
	}
	sort.Strings(out)
	return out
}

func TestGetAuthorizedEntries(t *testing.T) {
	e, agentID, want := authorizedEnv(t, Config{}, 0)
	resp, err := e.client.GetAuthorizedEntries(ctxAs(t, "agent "+agentID), &entryv1.GetAuthorizedEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(resp.Entries); !slices.Equal(got, want) {
		t.Fatalf("authorized %v, want %v", got, want)
	}
	resp, err = e.client.GetAuthorizedEntries(ctxAs(t, "agent "+agentID), &entryv1.GetAuthorizedEntriesRequest{OutputMask: &types.EntryMask{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range resp.Entries {
		assertProtoEqual(t, x, &types.Entry{Id: x.Id})
	}

	for _, tc := range []struct{ who, msg string }{
		{"", "caller is not an agent"},
		{"admin", "caller is not an agent"},
		{"agent spiffe://" + e.td.Name() + "/spire/agent/unknown", fmt.Sprintf("agent %q is not attested", "spiffe://"+e.td.Name()+"/spire/agent/unknown")},
	} {
		_, err := e.client.GetAuthorizedEntries(ctxAs(t, tc.who), &entryv1.GetAuthorizedEntriesRequest{})
		assertErr(t, err, codes.PermissionDenied, tc.msg)
	}
}

func TestSyncAuthorizedEntriesSmall(t *testing.T) {
	e, agentID, want := authorizedEnv(t, Config{}, 0)
	stream, err := e.client.SyncAuthorizedEntries(ctxAs(t, "agent "+agentID))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{OutputMask: &types.EntryMask{RevisionNumber: true, SpiffeId: true}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.More || len(resp.EntryRevisions) != 0 {
		t.Fatalf("small sync: more=%v revisions=%d", resp.More, len(resp.EntryRevisions))
	}
	if got := ids(resp.Entries); !slices.Equal(got, want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	for _, x := range resp.Entries {
		if x.SpiffeId == nil || x.ParentId != nil {
			t.Fatalf("mask not applied: %v", x)
		}
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream not finished: %v", err)
	}
}

func TestSyncAuthorizedEntriesPaged(t *testing.T) {
	const pageSize = 3
	e, agentID, want := authorizedEnv(t, Config{SyncPageSize: pageSize}, 5) // 8 entries
	stream, err := e.client.SyncAuthorizedEntries(ctxAs(t, "agent "+agentID))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{}); err != nil {
		t.Fatal(err)
	}
	var revs []*entryv1.EntryRevision
	for range len(want) {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Entries) != 0 || len(resp.EntryRevisions) > pageSize {
			t.Fatalf("revision page: %d entries, %d revisions", len(resp.Entries), len(resp.EntryRevisions))
		}
		revs = append(revs, resp.EntryRevisions...)
		if !resp.More {
			break
		}
	}
	var revIDs []string
	for _, r := range revs {
		revIDs = append(revIDs, r.Id)
		if r.CreatedAt == 0 {
			t.Fatalf("revision without created_at: %v", r)
		}
	}
	if !slices.Equal(revIDs, want) {
		t.Fatalf("revisions for %v, want %v", revIDs, want)
	}

	// Ask for a subset (unsorted, with a duplicate and an unknown ID), in
	// pages.
	request := []string{want[6], want[0], "unknown", want[3], want[1], want[0]}
	if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{Ids: request}); err != nil {
		t.Fatal(err)
	}
	var got []*types.Entry
	pages := 0
	for range 10 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(resp.Entries) > pageSize || len(resp.EntryRevisions) != 0 {
			t.Fatalf("entry page: %d entries, %d revisions", len(resp.Entries), len(resp.EntryRevisions))
		}
		got = append(got, resp.Entries...)
		if !resp.More {
			break
		}
	}
	wantIDs := []string{want[0], want[1], want[3], want[6]}
	sort.Strings(wantIDs)
	if !slices.Equal(ids(got), wantIDs) || pages != 2 {
		t.Fatalf("got %v in %d pages, want %v in 2", ids(got), pages, wantIDs)
	}
	for _, x := range got {
		if x.SpiffeId == nil || x.Selectors == nil {
			t.Fatalf("full entry expected: %v", x)
		}
	}

	// An empty request gets one empty final page.
	if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || resp.More || len(resp.Entries) != 0 {
		t.Fatalf("empty request: %v, %v", resp, err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v", err)
	}
}

func TestSyncAuthorizedEntriesErrors(t *testing.T) {
	e, agentID, _ := authorizedEnv(t, Config{}, 0)
	tests := []struct {
		name string
		who  string
		req  *entryv1.SyncAuthorizedEntriesRequest
		code codes.Code
		msg  string
	}{
		{"ids on initial request", "agent " + agentID, &entryv1.SyncAuthorizedEntriesRequest{Ids: []string{"x"}}, codes.InvalidArgument, "specifying IDs on initial request is not supported"},
		{"revision masked", "agent " + agentID, &entryv1.SyncAuthorizedEntriesRequest{OutputMask: &types.EntryMask{SpiffeId: true}}, codes.InvalidArgument, "revision number cannot be masked"},
		{"not an agent", "admin", &entryv1.SyncAuthorizedEntriesRequest{}, codes.PermissionDenied, "caller is not an agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := e.client.SyncAuthorizedEntries(ctxAs(t, tt.who))
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(tt.req); err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			assertErr(t, err, tt.code, tt.msg)
		})
	}
}
