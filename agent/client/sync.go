package client

import (
	"context"
	"errors"
	"fmt"
	"slices"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// syncMask is SPIRE's agent output mask: what an agent needs of an entry
// (the server mints with the rest), so parent IDs, DNS names and TTLs of
// thousands of entries are neither sent nor held.
var syncMask = &types.EntryMask{
	SpiffeId: true, Selectors: true, FederatesWith: true, Admin: true, Downstream: true,
	RevisionNumber: true, StoreSvid: true, Hint: true, CreatedAt: true,
}

// EntrySync is the difference between the entries a caller held and the
// ones the server authorizes now.
type EntrySync struct {
	// Changed are the entries the caller did not hold or held at another
	// revision (or creation time: deleted and recreated under the same ID).
	Changed []*types.Entry
	// Removed are the IDs of held entries no longer authorized.
	Removed []string
	// Received counts the entries the server sent in full.
	Received int
	// Fallback reports that the server lacks SyncAuthorizedEntries (an
	// older server) and the whole list came from GetAuthorizedEntries.
	Fallback bool
}

// SyncEntries brings held (entry ID → entry, not modified) up to date
// with SPIRE's SyncAuthorizedEntries protocol: the server sends every
// entry in full when there are few, and otherwise only the IDs and
// revisions, paged; the entries new or changed are then requested in
// pages of the server's size, so a sync in which one entry changed
// transfers that entry alone. A server answering Unimplemented is asked
// with GetAuthorizedEntries instead.
func (c *Client) SyncEntries(ctx context.Context, held map[string]*types.Entry) (*EntrySync, error) {
	res, err := c.syncEntries(ctx, held)
	if status.Code(err) != codes.Unimplemented {
		return res, err
	}
	resp, err := c.entry.GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{OutputMask: syncMask})
	if err != nil {
		return nil, err
	}
	res = diffFull(held, resp.Entries)
	res.Fallback = true
	return res, nil
}

func (c *Client) syncEntries(ctx context.Context, held map[string]*types.Entry) (*EntrySync, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream on every return
	stream, err := c.entry.SyncAuthorizedEntries(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{OutputMask: syncMask}); err != nil {
		if _, rerr := stream.Recv(); rerr != nil {
			if _, ok := status.FromError(rerr); ok {
				return nil, rerr
			}
		}
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if len(resp.EntryRevisions) == 0 {
		// Few entries: all of them, in full, in this one response.
		_ = stream.CloseSend()
		return diffFull(held, resp.Entries), nil
	}

	res := &EntrySync{}
	pageSize := len(resp.EntryRevisions)
	seen := make(map[string]bool, len(held))
	var needFull []string
	for {
		if len(resp.Entries) > 0 {
			return nil, errors.New("client: sync entries: server sent entries among the revisions")
		}
		for _, r := range resp.EntryRevisions {
			if r.Id == "" || seen[r.Id] {
				continue
			}
			seen[r.Id] = true
			if h, ok := held[r.Id]; !ok || stale(h, r.RevisionNumber, r.CreatedAt) {
				needFull = append(needFull, r.Id)
			}
		}
		if !resp.More {
			break
		}
		if resp, err = stream.Recv(); err != nil {
			return nil, fmt.Errorf("client: sync entries: receive revisions: %w", err)
		}
	}
	slices.Sort(needFull)
	requested := make(map[string]bool, len(needFull))
	received := make(map[string]bool, len(needFull))
	for _, id := range needFull {
		requested[id] = true
	}
	for len(needFull) > 0 {
		n := min(len(needFull), pageSize)
		if err := stream.Send(&entryv1.SyncAuthorizedEntriesRequest{Ids: needFull[:n]}); err != nil {
			return nil, fmt.Errorf("client: sync entries: request entries: %w", err)
		}
		needFull = needFull[n:]
		for {
			resp, err := stream.Recv()
			if err != nil {
				return nil, fmt.Errorf("client: sync entries: receive entries: %w", err)
			}
			if len(resp.EntryRevisions) > 0 {
				return nil, errors.New("client: sync entries: server sent revisions among the entries")
			}
			for _, e := range resp.Entries {
				if e.GetId() == "" || !requested[e.Id] || received[e.Id] {
					continue // not asked for
				}
				received[e.Id] = true
				res.Received++
				res.Changed = append(res.Changed, e)
			}
			if !resp.More {
				break
			}
		}
	}
	_ = stream.CloseSend()
	// An entry revoked between the revisions and the request is omitted
	// by the server: it is gone too.
	for id := range held {
		if !seen[id] || (requested[id] && !received[id]) {
			res.Removed = append(res.Removed, id)
		}
	}
	slices.Sort(res.Removed)
	return res, nil
}

// diffFull compares a complete list with held.
func diffFull(held map[string]*types.Entry, entries []*types.Entry) *EntrySync {
	res := &EntrySync{Received: len(entries)}
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		if e.GetId() == "" || seen[e.Id] {
			continue
		}
		seen[e.Id] = true
		if h, ok := held[e.Id]; !ok || stale(h, e.RevisionNumber, e.CreatedAt) {
			res.Changed = append(res.Changed, e)
		}
	}
	for id := range held {
		if !seen[id] {
			res.Removed = append(res.Removed, id)
		}
	}
	slices.Sort(res.Removed)
	return res
}

// stale reports whether held differs from the server's revision: another
// revision number, or another creation time (the entry was deleted and
// recreated under the same ID), as SPIRE's agent decides.
func stale(held *types.Entry, revision, createdAt int64) bool {
	if held.RevisionNumber != revision {
		return true
	}
	return createdAt != 0 && held.CreatedAt != createdAt
}
