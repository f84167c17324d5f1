package server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	notifyv1 "github.com/signet-id/signet/proto/signet/notify/v1"
	"github.com/signet-id/signet/rotation/renewal"
	"github.com/signet-id/signet/rotation/scheduler"
	"github.com/signet-id/signet/secrets"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Scheduler item kinds.
const (
	// kindCA advances the CA lifecycle at its next transition.
	kindCA = "ca"
	// kindSVID tells an agent to renew one workload SVID now, at a
	// jittered 50–80% of its lifetime, so a fleet never renews at once.
	kindSVID = "svid"
	// kindAgent tells an agent to renew its own SVID.
	kindAgent = "agent"
)

type svidPayload struct {
	Agent string `json:"agent"`
	Entry string `json:"entry,omitempty"`
}

// newScheduler creates the rotation scheduler (one per replica; one leader
// dispatches) and its handlers.
func (s *Server) newScheduler() (*scheduler.Scheduler, error) {
	host, _ := os.Hostname()
	sched, err := scheduler.New(s.etcd,
		scheduler.WithPrefix(s.keys().Schedule()),
		scheduler.WithName(fmt.Sprintf("%s/%s", host, s.AgentAddr())),
		scheduler.WithLogger(s.log.With("component", "scheduler")),
		scheduler.WithClock(s.cfg.Clock),
		scheduler.WithRegisterer(s.cfg.Registry),
	)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	sched.Handle(kindCA, scheduler.HandlerFunc(s.handleCA))
	sched.Handle(kindSVID, scheduler.HandlerFunc(s.handleRenew))
	sched.Handle(kindAgent, scheduler.HandlerFunc(s.handleRenew))
	sched.Handle(secrets.KindLeaseItem, scheduler.HandlerFunc(s.handleLease))
	return sched, nil
}

// scheduleCA keeps the CA item due at the next lifecycle transition. The
// item is the only driver of the CA lifecycle; if it cannot be written the
// rotation loop tries again at its next tick (on the leader).
func (s *Server) scheduleCA(ctx context.Context) {
	next := s.ca.NextTransition()
	if next.IsZero() {
		s.caUnscheduled.Store(false)
		return
	}
	if err := s.sched.Schedule(ctx, scheduler.Item{ID: "ca/lifecycle", Kind: kindCA, DueAt: next}); err != nil {
		s.caUnscheduled.Store(true)
		s.log.Warn("failed to schedule the next CA transition; retrying at the next rotation tick", "due", next, "error", err)
		return
	}
	s.caUnscheduled.Store(false)
}

func (s *Server) handleCA(ctx context.Context, it scheduler.Item) (*scheduler.Item, error) {
	changed, err := s.ca.Rotate()
	if err != nil {
		return nil, err
	}
	if changed {
		s.kickCA()
	}
	next := s.ca.NextTransition()
	if next.IsZero() {
		return nil, nil
	}
	it.DueAt, it.Attempt = next, 0
	return &it, nil
}

// handleRenew pushes renew-now for one SVID to the agent holding it. An
// agent that is not connected renews by itself at half-life.
func (s *Server) handleRenew(_ context.Context, it scheduler.Item) (*scheduler.Item, error) {
	var p svidPayload
	if err := json.Unmarshal(it.Payload, &p); err != nil {
		return nil, nil // malformed: drop, nothing to retry
	}
	n := &notifyv1.Notification{Kind: notifyv1.Notification_KIND_RENEW_NOW}
	if p.Entry != "" {
		n.EntryIds = []string{p.Entry}
	} else {
		n.EntryIds = []string{agentSelfEntry}
	}
	s.hub.Publish(n, func(agent spiffeid.ID) bool { return agent.String() == p.Agent })
	return nil, nil
}

// agentSelfEntry in a RENEW_NOW asks the agent to renew its own SVID.
const agentSelfEntry = notifyv1.AgentEntryID

// scheduleRenewal records the renewal due time of an SVID issued to an
// agent. It never blocks issuance: items go through a bounded queue.
func (s *Server) scheduleRenewal(agentID spiffeid.ID, entryID string, issuedAt, notAfter time.Time) {
	kind, id := kindSVID, "svid/"+agentID.String()+"#"+entryID
	if entryID == "" {
		kind, id = kindAgent, "agent/"+agentID.String()
	}
	payload, _ := json.Marshal(svidPayload{Agent: agentID.String(), Entry: entryID})
	it := scheduler.Item{ID: id, Kind: kind, DueAt: renewal.Default().Jittered(issuedAt, notAfter, rand.Reader), NotAfter: notAfter, Payload: payload}
	select {
	case s.renewals <- it:
	default:
		s.metrics.renewalsDropped.Inc()
	}
}

// renewalWriter writes queued renewal items to the scheduler.
func (s *Server) renewalWriter(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-s.renewals:
			err := s.sched.Schedule(ctx, it)
			if err != nil && !errors.Is(err, context.Canceled) {
				s.log.Warn("failed to schedule an SVID renewal; the agent renews at half-life", "item", it.ID, "error", err)
			}
		}
	}
}

// SchedulerLeader reports whether this replica leads the rotation
// scheduler.
func (s *Server) SchedulerLeader() bool { return s.sched != nil && s.sched.IsLeader() }
