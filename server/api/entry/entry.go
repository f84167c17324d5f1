// Package entry implements the SPIRE Entry API (spire.api.server.entry.v1)
// for Signet over the etcd-backed store: registration entry administration
// with SPIRE's filters, masks, pagination and per-item batch statuses, and
// the authorized-entry queries agents use to sync their workload entries.
package entry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/server/api/apiutil"
	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// DefaultSyncPageSize is SPIRE's page size for SyncAuthorizedEntries:
	// at most this many entries are sent in full on the first response.
	DefaultSyncPageSize = 500
	// DefaultMaxBatch bounds the number of items of one batch request.
	DefaultMaxBatch = 10000

	maxHintLength    = 1024
	maxEntryIDLength = 255
)

// Store is the state the service needs; *store.Store implements it.
type Store interface {
	CreateEntry(ctx context.Context, e *types.Entry) (*types.Entry, error)
	UpdateEntry(ctx context.Context, e *types.Entry, mask *types.EntryMask) (*types.Entry, error)
	DeleteEntry(ctx context.Context, id string) error
	GetEntry(ctx context.Context, id string) (*types.Entry, error)
	ListEntries(ctx context.Context, f store.EntryFilter, pageSize int, pageToken string) ([]*types.Entry, string, error)
	CountEntries(ctx context.Context, f store.EntryFilter) (int, error)
	GetAgent(ctx context.Context, id spiffeid.ID) (*types.Agent, error)
	AuthorizedEntries(ctx context.Context, agentID spiffeid.ID, agentSelectors []*types.Selector) ([]*types.Entry, error)
}

var _ Store = (*store.Store)(nil)

// Config configures the service.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Store       Store
	Logger      *slog.Logger
	// SyncPageSize is the SyncAuthorizedEntries page size
	// (DefaultSyncPageSize if zero).
	SyncPageSize int
	// MaxBatch bounds batch requests (DefaultMaxBatch if zero).
	MaxBatch int
	// MaxTTL bounds entries' SVID lifetimes: the CA lifetime, since no
	// SVID outlives its CA (ca.DefaultCATTL if zero).
	MaxTTL time.Duration
}

// Service implements entryv1.EntryServer.
type Service struct {
	entryv1.UnsafeEntryServer

	td       spiffeid.TrustDomain
	store    Store
	log      *slog.Logger
	pageSize int
	maxBatch int
	maxTTL   time.Duration
}

var _ entryv1.EntryServer = (*Service)(nil)

// New returns the service.
func New(cfg Config) *Service {
	s := &Service{
		td:       cfg.TrustDomain,
		store:    cfg.Store,
		log:      cfg.Logger,
		pageSize: cfg.SyncPageSize,
		maxBatch: cfg.MaxBatch,
		maxTTL:   cfg.MaxTTL,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.pageSize <= 0 {
		s.pageSize = DefaultSyncPageSize
	}
	if s.maxBatch <= 0 {
		s.maxBatch = DefaultMaxBatch
	}
	if s.maxTTL <= 0 {
		s.maxTTL = ca.DefaultCATTL
	}
	return s
}

// CountEntries counts the entries matching the filter.
func (s *Service) CountEntries(ctx context.Context, req *entryv1.CountEntriesRequest) (*entryv1.CountEntriesResponse, error) {
	var f store.EntryFilter
	if rf := req.GetFilter(); rf != nil {
		var err error
		f, err = s.filter(rf.BySpiffeId, rf.ByParentId, rf.BySelectors, rf.ByFederatesWith, rf.ByHint.GetValue(), rf.ByDownstream != nil, rf.ByDownstream.GetValue())
		if err != nil {
			return nil, err
		}
	}
	n, err := s.store.CountEntries(ctx, f)
	if err != nil {
		return nil, s.internal(ctx, "failed to count entries", err)
	}
	return &entryv1.CountEntriesResponse{Count: int32(min(n, 1<<31-1))}, nil
}

// ListEntries lists the entries matching the filter, ordered by ID, one
// page at a time when page_size is set.
func (s *Service) ListEntries(ctx context.Context, req *entryv1.ListEntriesRequest) (*entryv1.ListEntriesResponse, error) {
	var f store.EntryFilter
	if rf := req.GetFilter(); rf != nil {
		var err error
		f, err = s.filter(rf.BySpiffeId, rf.ByParentId, rf.BySelectors, rf.ByFederatesWith, rf.ByHint.GetValue(), rf.ByDownstream != nil, rf.ByDownstream.GetValue())
		if err != nil {
			return nil, err
		}
	}
	pageSize := 0
	if req.PageSize > 0 {
		pageSize = int(req.PageSize)
	}
	entries, next, err := s.store.ListEntries(ctx, f, pageSize, req.PageToken)
	if err != nil {
		return nil, s.internal(ctx, "failed to list entries", err)
	}
	resp := &entryv1.ListEntriesResponse{NextPageToken: next, Entries: entries}
	for _, e := range entries {
		applyMask(e, req.OutputMask)
	}
	return resp, nil
}

// GetEntry returns one entry; NotFound if it does not exist.
func (s *Service) GetEntry(ctx context.Context, req *entryv1.GetEntryRequest) (*types.Entry, error) {
	if req.Id == "" {
		return nil, status.Error(codes.InvalidArgument, "missing ID")
	}
	e, err := s.store.GetEntry(ctx, req.Id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, status.Error(codes.NotFound, "entry not found")
	case err != nil:
		return nil, s.internal(ctx, "failed to fetch entry", err)
	}
	applyMask(e, req.OutputMask)
	return e, nil
}

// BatchCreateEntry creates entries, one result per entry in order.
func (s *Service) BatchCreateEntry(ctx context.Context, req *entryv1.BatchCreateEntryRequest) (*entryv1.BatchCreateEntryResponse, error) {
	if len(req.Entries) > s.maxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "too many entries in one batch: %d > %d", len(req.Entries), s.maxBatch)
	}
	resp := &entryv1.BatchCreateEntryResponse{Results: make([]*entryv1.BatchCreateEntryResponse_Result, 0, len(req.Entries))}
	for _, e := range req.Entries {
		resp.Results = append(resp.Results, s.createEntry(ctx, e, req.OutputMask))
	}
	return resp, nil
}

func (s *Service) createEntry(ctx context.Context, e *types.Entry, outputMask *types.EntryMask) *entryv1.BatchCreateEntryResponse_Result {
	if err := s.validateEntry(e, nil, true); err != nil {
		return &entryv1.BatchCreateEntryResponse_Result{Status: errStatus(codes.InvalidArgument, err.Error())}
	}
	created, err := s.store.CreateEntry(ctx, e)
	switch {
	case err == nil:
		s.logChange(ctx, "entry created", created)
		applyMask(created, outputMask)
		return &entryv1.BatchCreateEntryResponse_Result{Status: okStatus(), Entry: created}
	case errors.Is(err, store.ErrAlreadyExists) && created != nil:
		applyMask(created, outputMask)
		return &entryv1.BatchCreateEntryResponse_Result{Status: errStatus(codes.AlreadyExists, "similar entry already exists"), Entry: created}
	case errors.Is(err, store.ErrAlreadyExists):
		return &entryv1.BatchCreateEntryResponse_Result{Status: errStatus(codes.AlreadyExists, fmt.Sprintf("entry with ID %q already exists", e.Id))}
	default:
		return &entryv1.BatchCreateEntryResponse_Result{Status: s.storeStatus(ctx, "failed to create entry", err)}
	}
}

// logChange logs an admin change of entry e at info, with stable fields.
func (s *Service) logChange(ctx context.Context, msg string, e *types.Entry) {
	s.log.InfoContext(ctx, msg, "entry_id", e.Id, "spiffe_id", apiutil.ProtoToString(e.SpiffeId), "parent_id", apiutil.ProtoToString(e.ParentId),
		"selectors", len(e.Selectors), "revision", e.RevisionNumber, apiutil.CallerAttr(ctx))
}

// BatchUpdateEntry updates the input_mask fields (all when unset) of
// entries, one result per entry in order.
func (s *Service) BatchUpdateEntry(ctx context.Context, req *entryv1.BatchUpdateEntryRequest) (*entryv1.BatchUpdateEntryResponse, error) {
	if len(req.Entries) > s.maxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "too many entries in one batch: %d > %d", len(req.Entries), s.maxBatch)
	}
	resp := &entryv1.BatchUpdateEntryResponse{Results: make([]*entryv1.BatchUpdateEntryResponse_Result, 0, len(req.Entries))}
	for _, e := range req.Entries {
		resp.Results = append(resp.Results, s.updateEntry(ctx, e, req.InputMask, req.OutputMask))
	}
	return resp, nil
}

func (s *Service) updateEntry(ctx context.Context, e *types.Entry, inputMask, outputMask *types.EntryMask) *entryv1.BatchUpdateEntryResponse_Result {
	if e == nil || e.Id == "" {
		// SPIRE answers NotFound: no entry has the empty ID.
		return &entryv1.BatchUpdateEntryResponse_Result{Status: errStatus(codes.NotFound, "entry not found: missing entry ID")}
	}
	if err := s.validateEntry(e, inputMask, false); err != nil {
		return &entryv1.BatchUpdateEntryResponse_Result{Status: errStatus(codes.InvalidArgument, err.Error())}
	}
	updated, err := s.store.UpdateEntry(ctx, e, inputMask)
	switch {
	case err == nil:
		s.logChange(ctx, "entry updated", updated)
		applyMask(updated, outputMask)
		return &entryv1.BatchUpdateEntryResponse_Result{Status: okStatus(), Entry: updated}
	case errors.Is(err, store.ErrNotFound):
		return &entryv1.BatchUpdateEntryResponse_Result{Status: errStatus(codes.NotFound, "entry not found")}
	case errors.Is(err, store.ErrAlreadyExists):
		return &entryv1.BatchUpdateEntryResponse_Result{Status: errStatus(codes.AlreadyExists, "failed to update entry: similar entry already exists")}
	default:
		return &entryv1.BatchUpdateEntryResponse_Result{Status: s.storeStatus(ctx, "failed to update entry", err)}
	}
}

// BatchDeleteEntry deletes entries by ID, one result per ID in order.
func (s *Service) BatchDeleteEntry(ctx context.Context, req *entryv1.BatchDeleteEntryRequest) (*entryv1.BatchDeleteEntryResponse, error) {
	if len(req.Ids) > s.maxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "too many entries in one batch: %d > %d", len(req.Ids), s.maxBatch)
	}
	resp := &entryv1.BatchDeleteEntryResponse{Results: make([]*entryv1.BatchDeleteEntryResponse_Result, 0, len(req.Ids))}
	for _, id := range req.Ids {
		r := &entryv1.BatchDeleteEntryResponse_Result{Id: id}
		if id == "" {
			r.Status = errStatus(codes.InvalidArgument, "missing entry ID")
			resp.Results = append(resp.Results, r)
			continue
		}
		switch err := s.store.DeleteEntry(ctx, id); {
		case err == nil:
			s.log.InfoContext(ctx, "entry deleted", "entry_id", id, apiutil.CallerAttr(ctx))
			r.Status = okStatus()
		case errors.Is(err, store.ErrNotFound):
			r.Status = errStatus(codes.NotFound, "entry not found")
		default:
			r.Status = s.storeStatus(ctx, "failed to delete entry", err)
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

// GetAuthorizedEntries returns the entries the calling agent is
// authorized for.
func (s *Service) GetAuthorizedEntries(ctx context.Context, req *entryv1.GetAuthorizedEntriesRequest) (*entryv1.GetAuthorizedEntriesResponse, error) {
	entries, err := s.authorizedEntries(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		applyMask(e, req.OutputMask)
	}
	return &entryv1.GetAuthorizedEntriesResponse{Entries: entries}, nil
}

// SyncAuthorizedEntries streams the calling agent's authorized entries
// with SPIRE's protocol: the client's first request carries only the
// output mask; up to the page size, all entries are sent in full in one
// response. Otherwise the entries' revisions are paged down (more=true on
// all but the last page), then each client request naming entry IDs is
// answered with those entries in full, paged the same way, until the
// client closes its side.
func (s *Service) SyncAuthorizedEntries(stream entryv1.Entry_SyncAuthorizedEntriesServer) error {
	ctx := stream.Context()
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	if len(req.Ids) > 0 {
		return status.Error(codes.InvalidArgument, "specifying IDs on initial request is not supported")
	}
	// Agents need the revision number to decide what to ask for.
	if req.OutputMask != nil && !req.OutputMask.RevisionNumber {
		return status.Error(codes.InvalidArgument, "revision number cannot be masked")
	}
	mask := req.OutputMask
	entries, err := s.authorizedEntries(ctx)
	if err != nil {
		return err
	}

	if len(entries) <= s.pageSize {
		for _, e := range entries {
			applyMask(e, mask)
		}
		return stream.Send(&entryv1.SyncAuthorizedEntriesResponse{Entries: entries})
	}

	sort.Slice(entries, func(i, j int) bool { return entries[i].Id < entries[j].Id })
	for start := 0; start < len(entries); start += s.pageSize {
		page := entries[start:min(start+s.pageSize, len(entries))]
		revs := make([]*entryv1.EntryRevision, 0, len(page))
		for _, e := range page {
			revs = append(revs, &entryv1.EntryRevision{Id: e.Id, RevisionNumber: e.RevisionNumber, CreatedAt: e.CreatedAt})
		}
		more := start+s.pageSize < len(entries)
		if err := stream.Send(&entryv1.SyncAuthorizedEntriesResponse{EntryRevisions: revs, More: more}); err != nil {
			return err
		}
	}
	for _, e := range entries {
		applyMask(e, mask)
	}

	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		}
		ids := slices.Clone(req.Ids)
		slices.Sort(ids)
		ids = slices.Compact(ids)
		var page []*types.Entry
		for _, id := range ids {
			i, found := sort.Find(len(entries), func(i int) int { return strings.Compare(id, entries[i].Id) })
			if !found {
				continue // no longer (or never) authorized: omitted
			}
			if len(page) == s.pageSize {
				if err := stream.Send(&entryv1.SyncAuthorizedEntriesResponse{Entries: page, More: true}); err != nil {
					return err
				}
				page = nil
			}
			page = append(page, entries[i])
		}
		if err := stream.Send(&entryv1.SyncAuthorizedEntriesResponse{Entries: page}); err != nil {
			return err
		}
	}
}

// authorizedEntries returns the calling agent's authorized entries.
func (s *Service) authorizedEntries(ctx context.Context) ([]*types.Entry, error) {
	c, ok := caller.FromContext(ctx)
	if !ok || c.Kind != caller.Agent || c.ID.IsZero() {
		return nil, status.Error(codes.PermissionDenied, "caller is not an agent")
	}
	agent, err := s.store.GetAgent(ctx, c.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, status.Errorf(codes.PermissionDenied, "agent %q is not attested", c.ID)
	case err != nil:
		return nil, s.internal(ctx, "failed to fetch agent", err)
	}
	entries, err := s.store.AuthorizedEntries(ctx, c.ID, agent.Selectors)
	if err != nil {
		return nil, s.internal(ctx, "failed to fetch entries", err)
	}
	return entries, nil
}

// filter converts and validates a List/CountEntries filter.
func (s *Service) filter(bySpiffeID, byParentID *types.SPIFFEID, bySelectors *types.SelectorMatch, byFederatesWith *types.FederatesWithMatch, byHint string, hasDownstream, downstream bool) (store.EntryFilter, error) {
	var f store.EntryFilter
	if byParentID != nil {
		id, err := s.memberID(byParentID)
		if err != nil {
			return f, status.Errorf(codes.InvalidArgument, "malformed parent ID filter: %v", err)
		}
		f.ByParentID = id
	}
	if bySpiffeID != nil {
		id, err := s.workloadID(bySpiffeID)
		if err != nil {
			return f, status.Errorf(codes.InvalidArgument, "malformed SPIFFE ID filter: %v", err)
		}
		f.BySpiffeID = id
	}
	if bySelectors != nil {
		if err := checkSelectors(bySelectors.Selectors); err != nil {
			return f, status.Errorf(codes.InvalidArgument, "malformed selectors filter: %v", err)
		}
		if len(bySelectors.Selectors) == 0 {
			return f, status.Error(codes.InvalidArgument, "malformed selectors filter: empty selector set")
		}
		if _, ok := types.SelectorMatch_MatchBehavior_name[int32(bySelectors.Match)]; !ok {
			return f, status.Errorf(codes.InvalidArgument, "malformed selectors filter: unknown match behavior %d", bySelectors.Match)
		}
		f.BySelectors = &store.SelectorMatch{Selectors: bySelectors.Selectors, Match: store.MatchBehavior(bySelectors.Match)}
	}
	if byFederatesWith != nil {
		tds := make([]string, 0, len(byFederatesWith.TrustDomains))
		for _, name := range byFederatesWith.TrustDomains {
			td, err := spiffeid.TrustDomainFromString(name)
			if err != nil {
				return f, status.Errorf(codes.InvalidArgument, "malformed federates with filter: %v", err)
			}
			tds = append(tds, td.Name())
		}
		if len(tds) == 0 {
			return f, status.Error(codes.InvalidArgument, "malformed federates with filter: empty trust domain set")
		}
		if _, ok := types.FederatesWithMatch_MatchBehavior_name[int32(byFederatesWith.Match)]; !ok {
			return f, status.Errorf(codes.InvalidArgument, "malformed federates with filter: unknown match behavior %d", byFederatesWith.Match)
		}
		f.ByFederatesWith = &store.FederatesWithMatch{TrustDomains: tds, Match: store.MatchBehavior(byFederatesWith.Match)}
	}
	f.ByHint = byHint
	// As in SPIRE, by_downstream=true keeps only downstream entries and
	// false does not filter at all (the spire-server CLI always sends it).
	if hasDownstream && downstream {
		f.ByDownstream = &downstream
	}
	return f, nil
}
