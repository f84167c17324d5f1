// Package notify implements signet.notify.v1: the push channel over which the
// server tells connected agents, at once, that their entries or the bundle
// changed or that SVIDs must be renewed now.
package notify

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	notifyv1 "github.com/signet-id/signet/proto/signet/notify/v1"
	"github.com/signet-id/signet/server/api/apiutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
)

// State reports what the hello message carries.
type State interface {
	Revision() int64
	BundleSequence() uint64
}

// Hub fans notifications out to the agents' Watch streams.
type Hub struct {
	notifyv1.UnimplementedNotifierServer
	state State

	mu       sync.Mutex
	watchers map[*watcher]struct{}
	// byAgent holds each agent's current watcher: at most one per agent.
	byAgent map[spiffeid.ID]*watcher

	connected prometheus.Gauge
	sent      *prometheus.CounterVec
}

var _ notifyv1.NotifierServer = (*Hub)(nil)

type watcher struct {
	agent spiffeid.ID
	// pending holds at most one coalesced notification per kind.
	mu      sync.Mutex
	pending map[notifyv1.Notification_Kind]*notifyv1.Notification
	wake    chan struct{}
	// replaced is closed when a newer Watch of the same agent takes over.
	replaced chan struct{}
}

// New returns a Hub. reg may be nil.
func New(state State, reg prometheus.Registerer) *Hub {
	h := &Hub{
		state:    state,
		watchers: map[*watcher]struct{}{},
		byAgent:  map[spiffeid.ID]*watcher{},
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signet_server_notify_watchers", Help: "Agents connected to the push stream.",
		}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signet_server_notify_sent_total", Help: "Push notifications sent to agents, by kind.",
		}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(h.connected, h.sent)
	}
	return h
}

// Watch serves one agent's stream until it ends.
func (h *Hub) Watch(_ *notifyv1.WatchRequest, stream notifyv1.Notifier_WatchServer) error {
	ctx := stream.Context()
	agentID, err := apiutil.CallerAgent(ctx)
	if err != nil {
		return err
	}
	w := &watcher{agent: agentID, pending: map[notifyv1.Notification_Kind]*notifyv1.Notification{}, wake: make(chan struct{}, 1), replaced: make(chan struct{})}
	h.add(w)
	h.connected.Inc()
	defer func() {
		h.remove(w)
		h.connected.Dec()
	}()
	if err := stream.Send(&notifyv1.Notification{Kind: notifyv1.Notification_KIND_HELLO, Revision: h.state.Revision(), BundleSequence: h.state.BundleSequence()}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.replaced:
			return errReplaced(agentID)
		case <-w.wake:
		}
		w.mu.Lock()
		batch := w.pending
		w.pending = map[notifyv1.Notification_Kind]*notifyv1.Notification{}
		w.mu.Unlock()
		for _, n := range batch {
			if err := stream.Send(n); err != nil {
				return err
			}
			h.sent.WithLabelValues(n.Kind.String()).Inc()
		}
	}
}

// Watchers returns how many agents are connected.
func (h *Hub) Watchers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watchers)
}

// Publish queues n for every connected agent accepted by match (nil: all).
// Notifications of one kind coalesce: an agent that has not yet received
// the previous one gets only the latest (RENEW_NOW merges entry IDs).
func (h *Hub) Publish(n *notifyv1.Notification, match func(agent spiffeid.ID) bool) {
	h.mu.Lock()
	ws := make([]*watcher, 0, len(h.watchers))
	for w := range h.watchers {
		if match == nil || match(w.agent) {
			ws = append(ws, w)
		}
	}
	h.mu.Unlock()
	for _, w := range ws {
		w.mu.Lock()
		msg := proto.Clone(n).(*notifyv1.Notification)
		if n.Kind == notifyv1.Notification_KIND_RENEW_NOW {
			prev, ok := w.pending[n.Kind]
			msg.EntryIds = mergeEntryIDs(prev, ok, n.EntryIds)
		}
		w.pending[n.Kind] = msg
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// EntriesChanged tells every agent to resync its entries.
func (h *Hub) EntriesChanged(rev int64) {
	h.Publish(&notifyv1.Notification{Kind: notifyv1.Notification_KIND_ENTRIES_CHANGED, Revision: rev}, nil)
}

// BundleChanged tells every agent to refetch the bundle.
func (h *Hub) BundleChanged(seq uint64) {
	h.Publish(&notifyv1.Notification{Kind: notifyv1.Notification_KIND_BUNDLE_CHANGED, BundleSequence: seq}, nil)
}

// RenewNow tells every agent to renew all its SVIDs now.
func (h *Hub) RenewNow(ctx context.Context) {
	h.Publish(&notifyv1.Notification{Kind: notifyv1.Notification_KIND_RENEW_NOW}, nil)
}
