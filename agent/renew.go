package agent

import (
	"context"
	"time"

	"github.com/signet-id/signet/agent/client"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// renewRetry is how long the session waits before asking again for SVIDs
// the server refused to renew.
const renewRetry = 5 * time.Second

// renewDue renews the held workload SVIDs past their renewal time or
// named by a RENEW_NOW, and mints those workloads asked for that are
// missing, and nothing else: no bundle or entry read, no check
// of the other SVIDs. One short-lived entry therefore costs one small
// BatchNewX509SVID per renewal, not a sync of every entry. refused reports
// SVIDs the server did not renew.
func (a *Agent) renewDue(ctx context.Context, c *client.Client) (refused bool, err error) {
	a.evict()
	now := a.cfg.Clock.Now()
	a.mu.Lock()
	var due []*types.Entry
	for _, e := range a.entries {
		s := a.svids[e.Id]
		if s != nil && (a.force[e.Id] || !now.Before(a.renewalTime(s.Chain[0]))) || s == nil && a.wanted.has(e.Id) {
			due = append(due, e)
			delete(a.force, e.Id)
		}
	}
	a.mu.Unlock()
	if len(due) == 0 {
		return false, nil
	}
	issued, err := a.obtain(ctx, c, due)
	if err != nil {
		return false, err
	}
	a.m.renewOnly.Inc()
	a.log.Debug("renewed due SVIDs", "due", len(due), "renewed", issued)
	return issued < len(due), nil
}

// obtain requests SVIDs for due in batches, each with its own deadline,
// and serves them as they arrive (at most once a second to the cache, so a
// sync of many thousands stays cheap); the disk copy is written at the end.
func (a *Agent) obtain(ctx context.Context, c *client.Client, due []*types.Entry) (int, error) {
	issued := 0
	lastPublish := time.Now()
	for start := 0; start < len(due); start += client.MaxBatch {
		chunk := due[start:min(start+client.MaxBatch, len(due))]
		got, err := a.newSVIDBatch(ctx, c, chunk)
		if err != nil {
			if issued > 0 {
				a.publish(true)
			}
			return issued, err
		}
		a.mu.Lock()
		for _, e := range chunk {
			if s, ok := got[e.Id]; ok {
				if _, still := a.entries[e.Id]; still && a.wanted.has(e.Id) {
					a.setSVID(e.Id, s, e.RevisionNumber)
				}
			}
		}
		a.mu.Unlock()
		issued += len(got)
		if time.Since(lastPublish) > time.Second {
			a.publish(false)
			lastPublish = time.Now()
			a.log.Info("sync in progress", "svids_issued", issued, "svids_due", len(due))
		}
	}
	if len(due) > 0 {
		a.publish(true)
	}
	return issued, nil
}
