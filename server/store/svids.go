package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/signet-id/signet/server/keyspace"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Issued X.509-SVIDs are tracked under
//
//	/signet/<td>/svids/<authority ID>/<agent SPIFFE ID>#<entry ID>
//
// one key per (agent, entry): the latest SVID issued for it. The agent's
// own X.509-SVID is recorded with an empty entry ID. Keying by the
// issuing authority first makes "how many SVIDs does authority A still
// sign" a range read of A's prefix only, which shrinks to nothing as
// agents renew after a taint. '#' cannot occur in a SPIFFE ID, so the
// agent ID and entry ID split unambiguously.
const (
	svidsDir = keyspace.SVIDsDir
	// maxTxnOps is etcd's default limit on the operations of one
	// transaction (--max-txn-ops).
	maxTxnOps = 128
)

// SVIDRecord is the latest X.509-SVID the server issued to an agent for a
// registration entry, or (EntryID empty) the agent's own SVID.
type SVIDRecord struct {
	AgentID     string    `json:"agent_id"`
	EntryID     string    `json:"entry_id"`
	SpiffeID    string    `json:"spiffe_id"`
	Serial      string    `json:"serial"`
	AuthorityID string    `json:"authority_id"`
	IssuedAt    time.Time `json:"issued_at"`
	ExpiresAt   time.Time `json:"expires_at"`
}

func (s *Store) svidAuthorityPrefix(authorityID string) string {
	return s.prefix + svidsDir + authorityID + "/"
}

func (s *Store) svidKey(authorityID, agentID, entryID string) string {
	return s.svidAuthorityPrefix(authorityID) + agentID + "#" + entryID
}

func (s *Store) checkSVIDRecord(r *SVIDRecord) error {
	if err := checkAuthorityID(r.AuthorityID); err != nil {
		return err
	}
	id, err := spiffeid.FromString(r.AgentID)
	if err != nil {
		return invalidf("SVID record agent ID %q: %v", r.AgentID, err)
	}
	if err := s.checkAgentID(id); err != nil {
		return err
	}
	if strings.Contains(r.EntryID, "#") {
		return invalidf("SVID record entry ID %q contains '#'", r.EntryID)
	}
	return nil
}

func checkAuthorityID(id string) error {
	if id == "" || strings.ContainsAny(id, "/#") {
		return invalidf("invalid authority ID %q", id)
	}
	return nil
}

func encodeSVIDRecord(r *SVIDRecord) (string, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("store: encode SVID record: %w", err)
	}
	out, err := json.Marshal(envelope{V: envelopeVersion, Data: data})
	if err != nil {
		return "", fmt.Errorf("store: encode SVID record: %w", err)
	}
	return string(out), nil
}

func decodeSVIDRecord(value []byte) (*SVIDRecord, error) {
	var env envelope
	if err := json.Unmarshal(value, &env); err != nil {
		return nil, fmt.Errorf("store: decode envelope: %w", err)
	}
	if env.V != envelopeVersion {
		return nil, fmt.Errorf("store: unsupported record version %d", env.V)
	}
	r := new(SVIDRecord)
	if err := json.Unmarshal(env.Data, r); err != nil {
		return nil, fmt.Errorf("store: decode SVID record: %w", err)
	}
	return r, nil
}

// PutSVIDRecords stores recs, each replacing the record of the same agent
// and entry under any of the given authorities (the authorities that may
// have signed the previous SVID: the CA's current ones). Records are
// written in as few transactions as etcd's per-transaction limit allows;
// each record's put and deletes are in one transaction, so exactly one
// record per agent and entry survives concurrent writers. Records of one
// call must have distinct (agent, entry) pairs.
func (s *Store) PutSVIDRecords(ctx context.Context, recs []SVIDRecord, authorities []string) error {
	var ops []clientv3.Op
	commit := func() error {
		if len(ops) == 0 {
			return nil
		}
		if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("store: write SVID records: %w", err)
		}
		ops = ops[:0]
		return nil
	}
	for i := range recs {
		r := &recs[i]
		if err := s.checkSVIDRecord(r); err != nil {
			return err
		}
		value, err := encodeSVIDRecord(r)
		if err != nil {
			return err
		}
		recOps := []clientv3.Op{clientv3.OpPut(s.svidKey(r.AuthorityID, r.AgentID, r.EntryID), value)}
		for _, a := range authorities {
			if a != r.AuthorityID && checkAuthorityID(a) == nil {
				recOps = append(recOps, clientv3.OpDelete(s.svidKey(a, r.AgentID, r.EntryID)))
			}
		}
		if len(recOps) > maxTxnOps {
			return invalidf("too many authorities (%d) to replace an SVID record in one transaction", len(authorities))
		}
		if len(ops)+len(recOps) > maxTxnOps {
			if err := commit(); err != nil {
				return err
			}
		}
		ops = append(ops, recOps...)
	}
	return commit()
}

// scanSVIDs calls fn for every record under prefix, one page at a time,
// all pages read at the revision of the first.
func (s *Store) scanSVIDs(ctx context.Context, prefix string, fn func(page []*SVIDRecord, keys []string, modRevs []int64) error) error {
	end := clientv3.GetPrefixRangeEnd(prefix)
	key := prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, key, opts...)
		if err != nil {
			return fmt.Errorf("store: read SVID records: %w", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		page := make([]*SVIDRecord, 0, len(resp.Kvs))
		keys := make([]string, 0, len(resp.Kvs))
		modRevs := make([]int64, 0, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			r, err := decodeSVIDRecord(kv.Value)
			if err != nil {
				s.log.Error("store: skipping undecodable SVID record", "key", string(kv.Key), "error", err)
				continue
			}
			page = append(page, r)
			keys = append(keys, string(kv.Key))
			modRevs = append(modRevs, kv.ModRevision)
		}
		if err := fn(page, keys, modRevs); err != nil {
			return err
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// live reports whether r still stands for an SVID in use at now: not
// expired, and its agent and entry (if any) still exist. Caller holds s.mu
// (read).
func (s *Store) liveLocked(r *SVIDRecord, now time.Time) bool {
	if !now.Before(r.ExpiresAt) {
		return false
	}
	if _, ok := s.idx.entries[r.EntryID]; !ok && r.EntryID != "" {
		return false
	}
	_, ok := s.idx.agents[r.AgentID]
	return ok
}

// CountSVIDsByAuthority counts the tracked X.509-SVIDs signed by the given
// authority that are in use at now: unexpired, not replaced by a later
// SVID for the same agent and entry, and whose agent and entry still exist
// (records of evicted agents and deleted entries are ignored).
func (s *Store) CountSVIDsByAuthority(ctx context.Context, authorityID string, now time.Time) (int, error) {
	if err := checkAuthorityID(authorityID); err != nil {
		return 0, err
	}
	n := 0
	err := s.scanSVIDs(ctx, s.svidAuthorityPrefix(authorityID), func(page []*SVIDRecord, _ []string, _ []int64) error {
		if err := s.readIndex(ctx); err != nil {
			return err
		}
		defer s.mu.RUnlock()
		for _, r := range page {
			if s.liveLocked(r, now) {
				n++
			}
		}
		return nil
	})
	return n, err
}

// PruneSVIDRecords deletes the records that no longer stand for an SVID in
// use: expired ones, and those whose agent or entry is gone and that were
// written more than grace before now (grace covers index lag behind other
// replicas). A record rewritten meanwhile is kept. It returns how many it
// deleted.
func (s *Store) PruneSVIDRecords(ctx context.Context, now time.Time, grace time.Duration) (int, error) {
	deleted := 0
	err := s.scanSVIDs(ctx, s.prefix+svidsDir, func(page []*SVIDRecord, keys []string, modRevs []int64) error {
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		if err := s.readIndex(ctx); err != nil {
			return err
		}
		for i, r := range page {
			if s.liveLocked(r, now) || (now.Before(r.ExpiresAt) && now.Sub(r.IssuedAt) < grace) {
				continue
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(keys[i]), "=", modRevs[i]))
			ops = append(ops, clientv3.OpDelete(keys[i]))
		}
		s.mu.RUnlock()
		for start := 0; start < len(ops); start += maxTxnOps {
			end := min(start+maxTxnOps, len(ops))
			resp, err := s.cli.Txn(ctx).If(cmps[start:end]...).Then(ops[start:end]...).Commit()
			if err != nil {
				return fmt.Errorf("store: prune SVID records: %w", err)
			}
			if resp.Succeeded {
				deleted += end - start
				continue
			}
			// Some record was rewritten: delete the others one by one.
			for j := start; j < end; j++ {
				resp, err := s.cli.Txn(ctx).If(cmps[j]).Then(ops[j]).Commit()
				if err != nil {
					return fmt.Errorf("store: prune SVID records: %w", err)
				}
				if resp.Succeeded {
					deleted++
				}
			}
		}
		return nil
	})
	return deleted, err
}

// SVIDTracker records every X.509-SVID the server issues to an agent, so
// that a forced rotation can tell when the last SVID signed by a tainted
// authority was replaced. Issuance never waits for etcd: records are
// queued, coalesced per (agent, entry), and written in batches by Run.
type SVIDTracker struct {
	st          *Store
	authorities func() []string
	interval    time.Duration
	batch       int
	maxPending  int
	prune       time.Duration
	grace       time.Duration
	log         *slog.Logger

	mu      sync.Mutex
	pending map[svidSlot]SVIDRecord
	dropped int
	kick    chan struct{}

	flushMu sync.Mutex // one flush at a time, so later records win
}

type svidSlot struct{ agent, entry string }

// TrackerOption configures an SVIDTracker.
type TrackerOption func(*SVIDTracker)

// WithFlushInterval sets how often queued records are written (default
// 200ms). A batch is also written as soon as it reaches the batch size.
func WithFlushInterval(d time.Duration) TrackerOption {
	return func(t *SVIDTracker) { t.interval = d }
}

// WithBatchSize sets how many queued records trigger an early write
// (default 512).
func WithBatchSize(n int) TrackerOption { return func(t *SVIDTracker) { t.batch = n } }

// WithMaxPending bounds the queue (default 1<<20 records); records beyond
// it are dropped and logged, never blocking issuance.
func WithMaxPending(n int) TrackerOption { return func(t *SVIDTracker) { t.maxPending = n } }

// WithPruneInterval sets how often Run deletes expired and orphaned
// records (default 10m; 0 disables).
func WithPruneInterval(d time.Duration) TrackerOption {
	return func(t *SVIDTracker) { t.prune = d }
}

// NewSVIDTracker returns a tracker writing to s. authorities returns the
// IDs of the X.509 authorities that may have signed a previous SVID (the
// CA's prepared, active and old ones); a new record replaces the old one
// under each of them.
func NewSVIDTracker(s *Store, authorities func() []string, opts ...TrackerOption) *SVIDTracker {
	t := &SVIDTracker{
		st:          s,
		authorities: authorities,
		interval:    200 * time.Millisecond,
		batch:       512,
		maxPending:  1 << 20,
		prune:       10 * time.Minute,
		grace:       time.Minute,
		log:         s.log,
		pending:     make(map[svidSlot]SVIDRecord),
		kick:        make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(t)
	}
	if t.interval <= 0 {
		t.interval = 200 * time.Millisecond
	}
	if t.batch <= 0 {
		t.batch = 512
	}
	return t
}

// SVIDIssued queues a record of an X.509-SVID issued to agentID for
// entryID and signed by authorityID; an empty entryID records the agent's
// own SVID. Issuances without an agent (admin mints) are not tracked. It
// never blocks on etcd.
func (t *SVIDTracker) SVIDIssued(_ context.Context, agentID spiffeid.ID, entryID string, id spiffeid.ID, serial, authorityID string, expiresAt time.Time) {
	if agentID.IsZero() {
		return
	}
	r := SVIDRecord{
		AgentID: agentID.String(), EntryID: entryID, SpiffeID: id.String(), Serial: serial,
		AuthorityID: authorityID, IssuedAt: t.st.now(), ExpiresAt: expiresAt,
	}
	if err := t.st.checkSVIDRecord(&r); err != nil {
		t.log.Warn("store: not tracking SVID", "agent_id", r.AgentID, "entry_id", entryID, "error", err)
		return
	}
	k := svidSlot{r.AgentID, r.EntryID}
	t.mu.Lock()
	_, replacing := t.pending[k]
	if !replacing && len(t.pending) >= t.maxPending {
		t.dropped++
		t.mu.Unlock()
		return
	}
	t.pending[k] = r
	full := len(t.pending) >= t.batch
	t.mu.Unlock()
	if full {
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
}

// Flush writes the queued records now. On failure they are queued again
// (unless a newer record for the same agent and entry arrived meanwhile).
func (t *SVIDTracker) Flush(ctx context.Context) error {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	t.mu.Lock()
	batch := t.pending
	t.pending = make(map[svidSlot]SVIDRecord)
	dropped := t.dropped
	t.dropped = 0
	t.mu.Unlock()
	if dropped > 0 {
		t.log.Warn("store: SVID tracking queue full; records dropped (forced-rotation counts may be low until those SVIDs are renewed)", "dropped", dropped)
	}
	if len(batch) == 0 {
		return nil
	}
	recs := make([]SVIDRecord, 0, len(batch))
	for _, r := range batch {
		recs = append(recs, r)
	}
	var auths []string
	if t.authorities != nil {
		auths = t.authorities()
	}
	err := t.st.PutSVIDRecords(ctx, recs, auths)
	if err != nil {
		t.mu.Lock()
		for k, r := range batch {
			if _, newer := t.pending[k]; !newer {
				t.pending[k] = r
			}
		}
		t.mu.Unlock()
	}
	return err
}

// CountSVIDsByAuthority writes the queued records, then counts the SVIDs
// signed by authorityID still in use at now (see Store.CountSVIDsByAuthority).
func (t *SVIDTracker) CountSVIDsByAuthority(ctx context.Context, authorityID string, now time.Time) (int, error) {
	if err := t.Flush(ctx); err != nil {
		return 0, err
	}
	return t.st.CountSVIDsByAuthority(ctx, authorityID, now)
}

// Run writes queued records every flush interval (or as soon as a batch
// fills) and prunes dead records every prune interval, until ctx is done;
// then it writes what is left, with a short deadline of its own.
func (t *SVIDTracker) Run(ctx context.Context) error {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	var pruneC <-chan time.Time
	if t.prune > 0 {
		pt := time.NewTicker(t.prune)
		defer pt.Stop()
		pruneC = pt.C
	}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := t.Flush(fctx); err != nil {
				t.log.Warn("store: final write of SVID records failed", "error", err)
			}
			return nil
		case <-tick.C:
		case <-t.kick:
		case <-pruneC:
			n, err := t.st.PruneSVIDRecords(ctx, t.st.now(), t.grace)
			if err != nil {
				t.log.Warn("store: pruning SVID records failed", "error", err)
			} else if n > 0 {
				t.log.Debug("store: pruned SVID records", "deleted", n)
			}
			continue
		}
		if err := t.Flush(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("store: writing SVID records failed; will retry", "error", err)
		}
	}
}
