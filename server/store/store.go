// Package store is the Signet server's etcd-backed state for registration
// entries, attested agents, join tokens and federated bundles.
//
// Every write is an etcd transaction guarded by a revision compare (create:
// CreateRevision == 0; update and delete: ModRevision equal to what was
// read), so concurrent server replicas never lose updates. Reads are served
// from in-memory indexes fed by a list-then-watch of the trust domain's
// prefix; a compacted watch triggers a relist. Reads through a Store observe
// that Store's own completed writes.
package store

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/server/keyspace"
	"github.com/signet-id/signet/spireid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrNotFound: the record does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrAlreadyExists: a record with the same key (or a similar entry)
	// exists.
	ErrAlreadyExists = errors.New("store: already exists")
	// ErrConflict: the record kept changing concurrently and the write
	// could not be applied after several attempts.
	ErrConflict = errors.New("store: conflict")
	// ErrExpired: the join token existed but had expired (it is deleted).
	ErrExpired = errors.New("store: expired")
	// ErrInvalid: the input is malformed or references missing records.
	ErrInvalid = errors.New("store: invalid")
	// ErrInUse: the record is referenced by others and cannot be deleted.
	ErrInUse = errors.New("store: in use")
	// ErrNotStarted: a read was attempted before Start completed.
	ErrNotStarted = errors.New("store: not started")
)

// Key sub-prefixes below the trust domain's root (package keyspace).
const (
	entriesDir    = keyspace.EntriesDir
	entryKeysDir  = keyspace.EntryKeysDir
	agentsDir     = keyspace.AgentsDir
	joinTokensDir = keyspace.JoinTokensDir
	bundlesDir    = keyspace.BundlesDir

	envelopeVersion = 1
	// maxAttempts bounds optimistic read-compare-write retries.
	maxAttempts = 16
	// listPageSize bounds the size of one range response during a relist.
	listPageSize = 1000
)

// Option configures a Store.
type Option func(*Store)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// WithClock sets the clock used for created_at and SVID record expiry
// (default: the wall clock).
func WithClock(c clock.Clock) Option { return func(s *Store) { s.now = c.Now } }

// WithRand sets the randomness source for generated entry IDs (default:
// crypto/rand).
func WithRand(r io.Reader) Option { return func(s *Store) { s.rand = r } }

// Store is the etcd-backed state of one trust domain.
type Store struct {
	cli      *clientv3.Client
	td       spiffeid.TrustDomain
	serverID string
	prefix   string
	log      *slog.Logger
	now      func() time.Time
	rand     io.Reader
	randMu   sync.Mutex

	// lastWrite is the highest revision written through this Store; reads
	// wait until the index has applied it.
	lastWrite atomic.Int64

	mu      sync.RWMutex
	idx     *index
	started bool
	changed chan struct{} // closed and replaced whenever idx.rev advances

	subsMu sync.Mutex
	subs   map[*subscriber]struct{}

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Store for trust domain td over cli. Call Start before
// reading.
func New(cli *clientv3.Client, td spiffeid.TrustDomain, opts ...Option) (*Store, error) {
	if cli == nil {
		return nil, errors.New("store: etcd client is required")
	}
	if td.IsZero() {
		return nil, errors.New("store: trust domain is required")
	}
	serverID, err := spiffeid.FromPath(td, spireid.ServerPath)
	if err != nil {
		return nil, fmt.Errorf("store: server ID: %w", err)
	}
	s := &Store{
		cli:      cli,
		td:       td,
		serverID: serverID.String(),
		prefix:   keyspace.For(td).Root(),
		log:      slog.New(slog.DiscardHandler),
		now:      time.Now,
		rand:     rand.Reader,
		idx:      newIndex(),
		changed:  make(chan struct{}),
		subs:     make(map[*subscriber]struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// TrustDomain returns the store's trust domain.
func (s *Store) TrustDomain() spiffeid.TrustDomain { return s.td }

// Start lists the current state into memory and starts watching for
// changes. It returns once the initial list is loaded; the watch runs until
// Close or until ctx is done.
func (s *Store) Start(ctx context.Context) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.cancel != nil {
		return errors.New("store: already started")
	}
	rev, err := s.relist(ctx)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		s.watchFrom(runCtx, rev)
	}()
	return nil
}

// Close stops the watch. It does not close the etcd client.
func (s *Store) Close() error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	<-s.done
	s.subsMu.Lock()
	for sub := range s.subs {
		delete(s.subs, sub)
		close(sub.ch)
	}
	s.subsMu.Unlock()
	return nil
}

// Revision returns the etcd revision the in-memory index reflects.
func (s *Store) Revision() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.idx.rev
}

// Sync waits until the in-memory index reflects every write committed to
// etcd before the call (a read barrier across server replicas).
func (s *Store) Sync(ctx context.Context) error {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	target := resp.Header.Revision
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	for {
		ch, rev, started := s.watchState()
		if !started {
			return ErrNotStarted
		}
		if rev >= target {
			return nil
		}
		// Progress notifications advance the index revision when the
		// target revision's writes were outside our prefix.
		_ = s.cli.RequestProgress(clientv3.WithRequireLeader(ctx))
		select {
		case <-ch:
		case <-ticker.C:
		case <-ctx.Done():
			return fmt.Errorf("store: sync: %w", ctx.Err())
		}
	}
}

func (s *Store) watchState() (chan struct{}, int64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed, s.idx.rev, s.started
}

// waitRev waits until the index has applied revision rev.
func (s *Store) waitRev(ctx context.Context, rev int64) error {
	for {
		ch, cur, started := s.watchState()
		if !started {
			return ErrNotStarted
		}
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("store: waiting for revision %d: %w", rev, ctx.Err())
		}
	}
}

// readIndex waits for this Store's writes to be indexed and returns with
// the read lock held; the caller must call s.mu.RUnlock.
func (s *Store) readIndex(ctx context.Context) error {
	if err := s.waitRev(ctx, s.lastWrite.Load()); err != nil {
		return err
	}
	s.mu.RLock()
	return nil
}

func (s *Store) noteWrite(rev int64) {
	for {
		cur := s.lastWrite.Load()
		if rev <= cur || s.lastWrite.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// relist loads the entries, agents and bundles at one revision and replaces
// the index. It returns the revision loaded.
func (s *Store) relist(ctx context.Context) (int64, error) {
	var lastErr error
	for range maxAttempts {
		kvs, rev, err := s.listAll(ctx)
		if err == nil {
			fresh := newIndex()
			for _, kv := range kvs {
				s.applyPut(fresh, kv)
			}
			fresh.rev = rev
			s.mu.Lock()
			old := s.idx
			s.idx = fresh
			wasStarted := s.started
			s.started = true
			if wasStarted {
				ev := diffIndexes(old, fresh, s)
				ev.Resync = true
				s.publish(ev)
			}
			s.advanceLocked()
			s.mu.Unlock()
			return rev, nil
		}
		if !errors.Is(err, rpctypes.ErrCompacted) {
			return 0, fmt.Errorf("store: list: %w", err)
		}
		lastErr = err // compacted under a paginated list: start over
	}
	return 0, fmt.Errorf("store: list: %w", lastErr)
}

// listAll reads every key of the watched kinds at a single revision,
// paginating each prefix.
func (s *Store) listAll(ctx context.Context) ([]*mvccpb.KeyValue, int64, error) {
	var (
		all []*mvccpb.KeyValue
		rev int64
	)
	for _, dir := range []string{entriesDir, agentsDir, bundlesDir} {
		prefix := s.prefix + dir
		end := clientv3.GetPrefixRangeEnd(prefix)
		key := prefix
		for {
			opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPageSize)}
			if rev != 0 {
				opts = append(opts, clientv3.WithRev(rev))
			}
			resp, err := s.cli.Get(ctx, key, opts...)
			if err != nil {
				return nil, 0, err
			}
			if rev == 0 {
				rev = resp.Header.Revision
			}
			all = append(all, resp.Kvs...)
			if !resp.More || len(resp.Kvs) == 0 {
				break
			}
			key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
	}
	return all, rev, nil
}

// watchFrom applies changes after revision rev until ctx is done,
// re-establishing the watch after errors and relisting after compaction.
func (s *Store) watchFrom(ctx context.Context, rev int64) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
		relist := false
		for resp := range wch {
			if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
				relist = true
				break
			}
			if err := resp.Err(); err != nil {
				s.log.Warn("store: watch error", "error", err, "revision", rev)
				break
			}
			rev = s.applyWatch(resp)
			backoff = 50 * time.Millisecond
		}
		wcancel()
		if relist {
			s.log.Info("store: watch compacted, relisting", "revision", rev)
			newRev, err := s.relist(ctx)
			if err == nil {
				rev = newRev
				continue
			}
			s.log.Warn("store: relist failed", "error", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// applyWatch applies one watch response to the index and returns the
// index revision afterwards.
func (s *Store) applyWatch(resp clientv3.WatchResponse) int64 {
	s.mu.Lock()
	rec := newChangeRecorder(s)
	for _, ev := range resp.Events {
		switch ev.Type {
		case clientv3.EventTypePut:
			rec.before(s.idx, string(ev.Kv.Key))
			s.applyPut(s.idx, ev.Kv)
			rec.after(s.idx, string(ev.Kv.Key))
		case clientv3.EventTypeDelete:
			rec.before(s.idx, string(ev.Kv.Key))
			s.applyDelete(s.idx, string(ev.Kv.Key))
		}
		s.idx.rev = max(s.idx.rev, ev.Kv.ModRevision)
	}
	if resp.IsProgressNotify() {
		s.idx.rev = max(s.idx.rev, resp.Header.Revision)
	}
	rev := s.idx.rev
	// Publish before waking revision waiters, so that once a reader sees
	// revision rev every event up to rev has been delivered.
	if ev, changed := rec.event(s.idx); changed {
		s.publish(ev)
	}
	s.advanceLocked()
	s.mu.Unlock()
	return rev
}

// advanceLocked wakes revision waiters. Caller holds s.mu.
func (s *Store) advanceLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// envelope is the JSON value stored for every record.
type envelope struct {
	V    int             `json:"v"`
	Data json.RawMessage `json:"data"`
}

var (
	marshalOpts   = protojson.MarshalOptions{UseProtoNames: true}
	unmarshalOpts = protojson.UnmarshalOptions{DiscardUnknown: true}
)

func encode(m proto.Message) (string, error) {
	data, err := marshalOpts.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("store: encode: %w", err)
	}
	out, err := json.Marshal(envelope{V: envelopeVersion, Data: data})
	if err != nil {
		return "", fmt.Errorf("store: encode: %w", err)
	}
	return string(out), nil
}

func decode(value []byte, m proto.Message) error {
	var env envelope
	if err := json.Unmarshal(value, &env); err != nil {
		return fmt.Errorf("store: decode envelope: %w", err)
	}
	if env.V != envelopeVersion {
		return fmt.Errorf("store: unsupported record version %d", env.V)
	}
	if err := unmarshalOpts.Unmarshal(env.Data, m); err != nil {
		return fmt.Errorf("store: decode record: %w", err)
	}
	return nil
}

// txn commits a transaction and records its revision when it succeeded.
func (s *Store) txn(ctx context.Context, cmps []clientv3.Cmp, ops []clientv3.Op, elseOps ...clientv3.Op) (*clientv3.TxnResponse, error) {
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Else(elseOps...).Commit()
	if err != nil {
		return nil, fmt.Errorf("store: txn: %w", err)
	}
	if resp.Succeeded {
		s.noteWrite(resp.Header.Revision)
	}
	return resp, nil
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
