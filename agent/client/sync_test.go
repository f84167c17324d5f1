package client_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/signet-id/signet/agent/client"
	"github.com/signet-id/signet/server/api/entry"
	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/etcdserver/etcdtest"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

var (
	testEtcd *etcdserver.Server
	tds      etcdtest.TrustDomains
)

func TestMain(m *testing.M) { etcdtest.Main(m, &testEtcd) }

// wire counts what the server sent on SyncAuthorizedEntries streams, as
// received on the agent's real gRPC connection.
type wire struct{ entries, revisions, streams atomic.Int64 }

type countingStream struct {
	grpc.ClientStream
	w *wire
}

func (s countingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if r, ok := m.(*entryv1.SyncAuthorizedEntriesResponse); ok && err == nil {
		s.w.entries.Add(int64(len(r.Entries)))
		s.w.revisions.Add(int64(len(r.EntryRevisions)))
	}
	return err
}

func (w *wire) reset() { w.entries.Store(0); w.revisions.Store(0); w.streams.Store(0) }

// syncEnv is the real Entry service over a real store on embedded etcd,
// served on loopback to a client whose calls carry an agent's identity.
type syncEnv struct {
	store   *store.Store
	agentID spiffeid.ID
	client  *client.Client
	wire    *wire
}

func newSyncEnv(t *testing.T, pageSize int, entrySrv func(entryv1.EntryServer) entryv1.EntryServer) *syncEnv {
	t.Helper()
	td := tds.Next(t)
	st, err := store.New(testEtcd.Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	agentID := spiffeid.RequireFromPath(td, "/spire/agent/join_token/node1")
	if _, err := st.CreateAgent(testContext(t), &types.Agent{Id: &types.SPIFFEID{TrustDomain: td.Name(), Path: agentID.Path()}}); err != nil {
		t.Fatal(err)
	}
	asAgent := func(ctx context.Context) context.Context {
		return caller.NewContext(ctx, caller.Caller{Kind: caller.Agent, ID: agentID})
	}
	g := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(asAgent(ctx), req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, ctxStream{ss, asAgent(ss.Context())})
		}),
	)
	var svc entryv1.EntryServer = entry.New(entry.Config{TrustDomain: td, Store: st, SyncPageSize: pageSize})
	if entrySrv != nil {
		svc = entrySrv(svc)
	}
	entryv1.RegisterEntryServer(g, svc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	w := &wire{}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			w.streams.Add(1)
			cs, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, err
			}
			return countingStream{cs, w}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &syncEnv{store: st, agentID: agentID, client: client.New(conn), wire: w}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }

func (e *syncEnv) create(t *testing.T, n int) []*types.Entry {
	t.Helper()
	td := e.agentID.TrustDomain().Name()
	var out []*types.Entry
	for i := range n {
		got, err := e.store.CreateEntry(testContext(t), &types.Entry{
			SpiffeId:  &types.SPIFFEID{TrustDomain: td, Path: fmt.Sprintf("/w/%d", i)},
			ParentId:  &types.SPIFFEID{TrustDomain: td, Path: e.agentID.Path()},
			Selectors: []*types.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", i)}},
		})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got)
	}
	return out
}

// sync runs SyncEntries on held and applies the result to it.
func (e *syncEnv) sync(t *testing.T, held map[string]*types.Entry) *client.EntrySync {
	t.Helper()
	e.wire.reset()
	res, err := e.client.SyncEntries(testContext(t), held)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range res.Removed {
		delete(held, id)
	}
	for _, x := range res.Changed {
		held[x.Id] = x
	}
	return res
}

func sortedIDs(es []*types.Entry) []string {
	out := make([]string, 0, len(es))
	for _, x := range es {
		out = append(out, x.Id)
	}
	slices.Sort(out)
	return out
}

func checkHeld(t *testing.T, held map[string]*types.Entry, want []*types.Entry) {
	t.Helper()
	if got := slices.Sorted(func(yield func(string) bool) {
		for id := range held {
			if !yield(id) {
				return
			}
		}
	}); !slices.Equal(got, sortedIDs(want)) {
		t.Fatalf("held %d entries, want %d", len(got), len(want))
	}
	for _, w := range want {
		if held[w.Id].RevisionNumber != w.RevisionNumber || held[w.Id].Hint != w.Hint {
			t.Fatalf("entry %s held at revision %d hint %q, want %d %q", w.Id, held[w.Id].RevisionNumber, held[w.Id].Hint, w.RevisionNumber, w.Hint)
		}
	}
}

// TestSyncEntriesTransfersOnlyChanges syncs 300 entries paged by 50 from
// the real Entry service, then shows on the wire that an update moves one
// entry, a deletion none, and no change none.
func TestSyncEntriesTransfersOnlyChanges(t *testing.T) {
	e := newSyncEnv(t, 50, nil)
	all := e.create(t, 300)
	held := map[string]*types.Entry{}

	res := e.sync(t, held)
	checkHeld(t, held, all)
	if res.Fallback || res.Received != 300 || e.wire.entries.Load() != 300 || e.wire.revisions.Load() != 300 {
		t.Fatalf("first sync: received %d, wire %d entries %d revisions, fallback %v", res.Received, e.wire.entries.Load(), e.wire.revisions.Load(), res.Fallback)
	}

	for _, x := range held {
		if x.ParentId != nil || x.SpiffeId == nil || len(x.Selectors) == 0 || x.CreatedAt == 0 {
			t.Fatalf("entry %s not masked as SPIRE's agent asks: %v", x.Id, x)
		}
	}

	upd := cloneEntry(all[123])
	upd.Hint = "changed"
	got, err := e.store.UpdateEntry(testContext(t), upd, &types.EntryMask{Hint: true})
	if err != nil {
		t.Fatal(err)
	}
	all[123] = got
	res = e.sync(t, held)
	checkHeld(t, held, all)
	if len(res.Changed) != 1 || res.Changed[0].Id != got.Id || len(res.Removed) != 0 || e.wire.entries.Load() != 1 {
		t.Fatalf("after one update: %d changed, %d removed, %d entries on the wire; want 1, 0, 1", len(res.Changed), len(res.Removed), e.wire.entries.Load())
	}

	if err := e.store.DeleteEntry(testContext(t), all[7].Id); err != nil {
		t.Fatal(err)
	}
	gone := all[7].Id
	all = slices.Delete(all, 7, 8)
	res = e.sync(t, held)
	checkHeld(t, held, all)
	if !slices.Equal(res.Removed, []string{gone}) || len(res.Changed) != 0 || e.wire.entries.Load() != 0 {
		t.Fatalf("after a deletion: removed %q, %d changed, %d entries on the wire", res.Removed, len(res.Changed), e.wire.entries.Load())
	}

	res = e.sync(t, held)
	if len(res.Changed)+len(res.Removed) != 0 || e.wire.entries.Load() != 0 || e.wire.revisions.Load() != 299 {
		t.Fatalf("unchanged: %d changed, %d removed, wire %d entries %d revisions", len(res.Changed), len(res.Removed), e.wire.entries.Load(), e.wire.revisions.Load())
	}
}

// TestSyncEntriesSmallAndFallback: few entries come in full in one
// response, and a server without SyncAuthorizedEntries (Unimplemented) is
// read with GetAuthorizedEntries; both yield the same differences.
func TestSyncEntriesSmallAndFallback(t *testing.T) {
	tests := []struct {
		name     string
		wrap     func(entryv1.EntryServer) entryv1.EntryServer
		fallback bool
	}{
		{"small set in one response", nil, false},
		{"older server", func(s entryv1.EntryServer) entryv1.EntryServer { return getOnly{real: s} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newSyncEnv(t, 0, tt.wrap)
			all := e.create(t, 20)
			held := map[string]*types.Entry{}
			res := e.sync(t, held)
			checkHeld(t, held, all)
			if res.Fallback != tt.fallback || len(res.Changed) != 20 {
				t.Fatalf("fallback %v, %d changed", res.Fallback, len(res.Changed))
			}
			if tt.fallback && e.wire.entries.Load() != 0 {
				t.Fatal("the older server streamed entries")
			}
			upd := cloneEntry(all[3])
			upd.Hint = "h"
			all[3] = mustUpdate(t, e, upd)
			if res = e.sync(t, held); len(res.Changed) != 1 || res.Changed[0].Id != all[3].Id {
				t.Fatalf("after one update, %d changed", len(res.Changed))
			}
			if err := e.store.DeleteEntry(testContext(t), all[0].Id); err != nil {
				t.Fatal(err)
			}
			res = e.sync(t, held)
			checkHeld(t, held, all[1:])
			if !slices.Equal(res.Removed, []string{all[0].Id}) || len(res.Changed) != 0 {
				t.Fatalf("after a deletion: removed %q, changed %d", res.Removed, len(res.Changed))
			}
		})
	}
}

func cloneEntry(x *types.Entry) *types.Entry { return proto.Clone(x).(*types.Entry) }

func mustUpdate(t *testing.T, e *syncEnv, x *types.Entry) *types.Entry {
	t.Helper()
	got, err := e.store.UpdateEntry(testContext(t), x, &types.EntryMask{Hint: true})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// getOnly is an older server: GetAuthorizedEntries only, so
// SyncAuthorizedEntries answers Unimplemented.
type getOnly struct {
	entryv1.UnimplementedEntryServer
	real entryv1.EntryServer
}

func (g getOnly) GetAuthorizedEntries(ctx context.Context, req *entryv1.GetAuthorizedEntriesRequest) (*entryv1.GetAuthorizedEntriesResponse, error) {
	return g.real.GetAuthorizedEntries(ctx, req)
}
