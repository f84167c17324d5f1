package notify_test

import (
	"context"
	"net"
	"testing"
	"time"

	notifyv1 "github.com/signet-id/signet/proto/signet/notify/v1"
	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/server/notify"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

type state struct{}

func (state) Revision() int64        { return 42 }
func (state) BundleSequence() uint64 { return 7 }

// serve runs the hub on loopback; the "agent" metadata value stands in for
// the mTLS identity the real server derives.
func serve(t *testing.T, h *notify.Hub) notifyv1.NotifierClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		ctx := ss.Context()
		if v := md.Get("agent"); len(v) == 1 {
			ctx = caller.NewContext(ctx, caller.Caller{Kind: caller.Agent, ID: spiffeid.RequireFromString(v[0])})
		}
		return handler(srv, wrapped{ss, ctx})
	}))
	notifyv1.RegisterNotifierServer(g, h)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return notifyv1.NewNotifierClient(conn)
}

type wrapped struct {
	grpc.ServerStream
	ctx context.Context
}

func (w wrapped) Context() context.Context { return w.ctx }

func watch(t *testing.T, c notifyv1.NotifierClient, agent string) notifyv1.Notifier_WatchClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if agent != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "agent", agent)
	}
	s, err := c.Watch(ctx, &notifyv1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHelloThenTargetedNotifications(t *testing.T) {
	h := notify.New(state{}, nil)
	c := serve(t, h)
	a := watch(t, c, "spiffe://example.org/spire/agent/a")
	b := watch(t, c, "spiffe://example.org/spire/agent/b")
	for _, s := range []notifyv1.Notifier_WatchClient{a, b} {
		n, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if n.Kind != notifyv1.Notification_KIND_HELLO || n.Revision != 42 || n.BundleSequence != 7 {
			t.Fatalf("first message %v, want hello with the current state", n)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.Watchers() != 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	onlyA := func(id spiffeid.ID) bool { return id.Path() == "/spire/agent/a" }
	h.Publish(&notifyv1.Notification{Kind: notifyv1.Notification_KIND_ENTRIES_CHANGED, Revision: 43}, onlyA)
	h.BundleChanged(8)
	n, err := a.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got := map[notifyv1.Notification_Kind]bool{n.Kind: true}
	n, err = a.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got[n.Kind] = true
	if !got[notifyv1.Notification_KIND_ENTRIES_CHANGED] || !got[notifyv1.Notification_KIND_BUNDLE_CHANGED] {
		t.Fatalf("agent a got %v", got)
	}
	// b only sees the bundle change.
	n, err = b.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if n.Kind != notifyv1.Notification_KIND_BUNDLE_CHANGED || n.BundleSequence != 8 {
		t.Fatalf("agent b got %v, want only the bundle change", n)
	}
}

func TestWatchRequiresAgent(t *testing.T) {
	c := serve(t, notify.New(state{}, nil))
	s := watch(t, c, "")
	if _, err := s.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("anonymous watch: %v, want PermissionDenied", err)
	}
}
