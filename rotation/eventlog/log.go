package eventlog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/signet-id/signet/clock"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors callers branch on.
var (
	// ErrConflict: the head kept moving under concurrent appends and the
	// append gave up after its bounded retries. Retrying later is safe.
	ErrConflict = errors.New("eventlog: too many concurrent appends")
	// ErrCorrupt: a stored value is not a valid record or head.
	ErrCorrupt = errors.New("eventlog: corrupt log state")
	// ErrInvalidRange: a sequence range outside the log.
	ErrInvalidRange = errors.New("eventlog: invalid range")
)

const (
	headName   = "head"
	anchorName = "anchor"
	recDir     = "rec/"

	// MaxBatch bounds the records one Append transaction writes (etcd
	// refuses transactions of more than 128 operations by default; one is
	// the head).
	MaxBatch = 100
	// MaxRange bounds the records one Range call returns.
	MaxRange = 10000
	// DefaultRange is the number of records Range returns for limit <= 0.
	DefaultRange = 1000

	maxAttempts = 64
	pageSize    = 500
)

// Log is the event log stored in etcd under one key prefix:
//
//	<prefix>head          the last record's seq, hash, time and kind
//	<prefix>anchor        the last archived seq and hash (after Archive)
//	<prefix>rec/<seq>     one record's JSON line; seq zero-padded to 20 digits
//
// Several Log values (in several server replicas) may append to the same
// prefix concurrently: each append is one transaction conditioned on the
// head key's revision, so the chain never forks and seqs never gap.
type Log struct {
	cli       *clientv3.Client
	prefix    string
	headKey   string
	anchorKey string
	recPrefix string
	now       func() time.Time
	log       *slog.Logger

	// afterCatchUp, if set (tests only), runs in Follow after a catch-up
	// read and before the watch starts, with the revision read.
	afterCatchUp func(rev int64)
}

// Option configures a Log.
type Option func(*Log)

// WithClock sets the clock records are stamped with (default the wall
// clock).
func WithClock(c clock.Clock) Option { return func(l *Log) { l.now = c.Now } }

// WithLogger sets the logger (default: discard).
func WithLogger(lg *slog.Logger) Option { return func(l *Log) { l.log = lg } }

// New returns the log stored under prefix (for example
// "/signet/example.org/events/").
func New(cli *clientv3.Client, prefix string, opts ...Option) (*Log, error) {
	if cli == nil {
		return nil, errors.New("eventlog: etcd client is nil")
	}
	if prefix == "" {
		return nil, errors.New("eventlog: key prefix is empty")
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	l := &Log{
		cli:       cli,
		prefix:    prefix,
		headKey:   prefix + headName,
		anchorKey: prefix + anchorName,
		recPrefix: prefix + recDir,
		now:       time.Now,
		log:       slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(l)
	}
	return l, nil
}

func (l *Log) recKey(seq uint64) string { return fmt.Sprintf("%s%020d", l.recPrefix, seq) }

// State describes the log's ends.
type State struct {
	// Seq, Hash and Time are those of the last record; Seq is 0 and Hash
	// GenesisHash for an empty log.
	Seq  uint64
	Hash string
	Time time.Time
	// Kind is the last record's kind.
	Kind Kind
	// ArchivedSeq and ArchivedHash are the seq and hash of the last
	// archived record (0 and "" if nothing was archived): the first record
	// still in the log has seq ArchivedSeq+1 and prev_hash ArchivedHash.
	ArchivedSeq  uint64
	ArchivedHash string

	headRev   int64 // ModRevision of the head key, 0 if absent
	anchorRev int64 // ModRevision of the anchor key, 0 if absent
}

type headValue struct {
	V    int    `json:"v"`
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	Time string `json:"time,omitempty"`
	Kind Kind   `json:"kind,omitempty"`
}

func emptyState() State { return State{Hash: GenesisHash} }

func decodeHead(kv *mvccpb.KeyValue, s *State) error {
	var h headValue
	if err := json.Unmarshal(kv.Value, &h); err != nil || h.V != SchemaVersion || h.Seq == 0 {
		return fmt.Errorf("%w: head %q", ErrCorrupt, kv.Value)
	}
	t, err := time.Parse(time.RFC3339Nano, h.Time)
	if err != nil {
		return fmt.Errorf("%w: head time %q", ErrCorrupt, h.Time)
	}
	s.Seq, s.Hash, s.Time, s.Kind, s.headRev = h.Seq, h.Hash, t.UTC(), h.Kind, kv.ModRevision
	return nil
}

func decodeAnchor(kv *mvccpb.KeyValue, s *State) error {
	var h headValue
	if err := json.Unmarshal(kv.Value, &h); err != nil || h.V != SchemaVersion || h.Seq == 0 {
		return fmt.Errorf("%w: anchor %q", ErrCorrupt, kv.Value)
	}
	s.ArchivedSeq, s.ArchivedHash, s.anchorRev = h.Seq, h.Hash, kv.ModRevision
	return nil
}

// State reads the log's head and archive anchor at one revision.
func (l *Log) State(ctx context.Context) (State, error) {
	resp, err := l.cli.Txn(ctx).Then(clientv3.OpGet(l.headKey), clientv3.OpGet(l.anchorKey)).Commit()
	if err != nil {
		return State{}, fmt.Errorf("eventlog: read head: %w", err)
	}
	s := emptyState()
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		if err := decodeHead(kvs[0], &s); err != nil {
			return State{}, err
		}
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		if err := decodeAnchor(kvs[0], &s); err != nil {
			return State{}, err
		}
	}
	return s, nil
}

// plan is what one append transaction writes besides the new records and
// head: extra conditions and operations (used by Archive).
type plan struct {
	recs []Record // Kind..Checkpoint set; the rest is filled in
	cmps []clientv3.Cmp
	ops  []clientv3.Op
}

// commit appends the records that build returns for the current head and
// time, in one transaction conditioned on the head's revision, rebuilding
// and retrying when another writer moved the head. build may return an
// empty plan to append nothing.
func (l *Log) commit(ctx context.Context, build func(s State, t time.Time) (plan, error)) ([]Record, error) {
	s, err := l.State(ctx)
	if err != nil {
		return nil, err
	}
	for range maxAttempts {
		t := l.now().UTC().Round(0)
		if t.Before(s.Time) {
			t = s.Time // times never go backwards along the chain
		}
		p, err := build(s, t)
		if err != nil {
			return nil, err
		}
		if len(p.recs) == 0 && len(p.ops) == 0 {
			return nil, nil
		}
		if len(p.recs) > MaxBatch {
			return nil, fmt.Errorf("eventlog: %d records in one append, more than %d", len(p.recs), MaxBatch)
		}
		ops := make([]clientv3.Op, 0, len(p.recs)+len(p.ops)+1)
		prev, seq := s.Hash, s.Seq
		for i := range p.recs {
			r := &p.recs[i]
			seq++
			r.V, r.Seq, r.Time, r.PrevHash = SchemaVersion, seq, t, prev
			r.Hash = ComputeHash(*r)
			line, err := r.encode()
			if err != nil {
				return nil, err
			}
			if len(line) > maxRecordBytes {
				return nil, fmt.Errorf("eventlog: %s record is %d bytes, more than %d", r.Kind, len(line), maxRecordBytes)
			}
			r.line = line
			ops = append(ops, clientv3.OpPut(l.recKey(seq), string(line)))
			prev = r.Hash
		}
		ops = append(ops, p.ops...)
		var cmp clientv3.Cmp
		if s.headRev == 0 {
			cmp = clientv3.Compare(clientv3.CreateRevision(l.headKey), "=", 0)
		} else {
			cmp = clientv3.Compare(clientv3.ModRevision(l.headKey), "=", s.headRev)
		}
		if len(p.recs) > 0 {
			last := p.recs[len(p.recs)-1]
			hv, _ := json.Marshal(headValue{V: SchemaVersion, Seq: last.Seq, Hash: last.Hash, Time: formatTime(t), Kind: last.Kind})
			ops = append(ops, clientv3.OpPut(l.headKey, string(hv)))
		}
		resp, err := l.cli.Txn(ctx).
			If(append([]clientv3.Cmp{cmp}, p.cmps...)...).
			Then(ops...).
			Else(clientv3.OpGet(l.headKey), clientv3.OpGet(l.anchorKey)).
			Commit()
		if err != nil {
			return nil, fmt.Errorf("eventlog: append: %w", err)
		}
		if resp.Succeeded {
			return p.recs, nil
		}
		// Someone else moved the head (or the anchor): rebuild on theirs.
		s = emptyState()
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			if err := decodeHead(kvs[0], &s); err != nil {
				return nil, err
			}
		}
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
			if err := decodeAnchor(kvs[0], &s); err != nil {
				return nil, err
			}
		}
	}
	return nil, ErrConflict
}

func eventRecord(e Event) Record {
	return Record{Kind: e.Kind, Subject: e.Subject, Actor: e.Actor, Serial: e.Serial, KeyID: e.KeyID, Details: e.Details}
}

// Append appends one event and returns its record. It waits for the etcd
// transaction; use an Appender to batch frequent events.
func (l *Log) Append(ctx context.Context, e Event) (Record, error) {
	recs, err := l.AppendBatch(ctx, []Event{e})
	if err != nil {
		return Record{}, err
	}
	return recs[0], nil
}

// AppendBatch appends up to MaxBatch events in one transaction, in order.
func (l *Log) AppendBatch(ctx context.Context, events []Event) ([]Record, error) {
	if len(events) == 0 {
		return nil, nil
	}
	if len(events) > MaxBatch {
		return nil, fmt.Errorf("eventlog: %d events in one batch, more than %d", len(events), MaxBatch)
	}
	for _, e := range events {
		if err := e.validate(); err != nil {
			return nil, err
		}
	}
	return l.commit(ctx, func(State, time.Time) (plan, error) {
		recs := make([]Record, len(events))
		for i, e := range events {
			recs[i] = eventRecord(e)
		}
		return plan{recs: recs}, nil
	})
}

// parseKV parses a stored record and checks it sits under its own seq.
func (l *Log) parseKV(kv *mvccpb.KeyValue) (Record, error) {
	r, err := ParseRecord(kv.Value)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, kv.Key, err)
	}
	seq, err := strconv.ParseUint(strings.TrimPrefix(string(kv.Key), l.recPrefix), 10, 64)
	if err != nil || seq != r.Seq {
		return Record{}, fmt.Errorf("%w: record with seq %d stored under %s", ErrCorrupt, r.Seq, kv.Key)
	}
	return r, nil
}

// Range returns up to limit records with seq >= fromSeq, in order (limit
// <= 0 means DefaultRange; at most MaxRange). Archived records are gone:
// a fromSeq at or below State().ArchivedSeq starts at the first remaining
// record.
func (l *Log) Range(ctx context.Context, fromSeq uint64, limit int) ([]Record, error) {
	recs, _, err := l.rangeRev(ctx, fromSeq, limit)
	return recs, err
}

func (l *Log) rangeRev(ctx context.Context, fromSeq uint64, limit int) ([]Record, int64, error) {
	if limit <= 0 {
		limit = DefaultRange
	}
	limit = min(limit, MaxRange)
	fromSeq = max(fromSeq, 1)
	resp, err := l.cli.Get(ctx, l.recKey(fromSeq),
		clientv3.WithRange(clientv3.GetPrefixRangeEnd(l.recPrefix)),
		clientv3.WithLimit(int64(limit)))
	if err != nil {
		return nil, 0, fmt.Errorf("eventlog: range from %d: %w", fromSeq, err)
	}
	recs := make([]Record, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		r, err := l.parseKV(kv)
		if err != nil {
			return nil, 0, err
		}
		recs = append(recs, r)
	}
	return recs, resp.Header.Revision, nil
}

// Last returns the last n records that match f (n <= 0 means
// DefaultRange; at most MaxRange), oldest first. It scans backwards and
// stops at the first record older than f.Since.
func (l *Log) Last(ctx context.Context, n int, f Filter) ([]Record, error) {
	if n <= 0 {
		n = DefaultRange
	}
	n = min(n, MaxRange)
	var out []Record
	end := clientv3.GetPrefixRangeEnd(l.recPrefix)
	for {
		resp, err := l.cli.Get(ctx, l.recPrefix,
			clientv3.WithRange(end),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend),
			clientv3.WithLimit(pageSize))
		if err != nil {
			return nil, fmt.Errorf("eventlog: read last records: %w", err)
		}
		done := len(resp.Kvs) < pageSize
		for _, kv := range resp.Kvs {
			r, err := l.parseKV(kv)
			if err != nil {
				return nil, err
			}
			if !f.Since.IsZero() && r.Time.Before(f.Since) {
				done = true
				break
			}
			if f.Match(r) {
				out = append(out, r)
				if len(out) == n {
					done = true
					break
				}
			}
		}
		if done || len(resp.Kvs) == 0 {
			break
		}
		end = string(resp.Kvs[len(resp.Kvs)-1].Key) // exclusive
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// ExportStats describes what Export wrote.
type ExportStats struct {
	Records  int
	FirstSeq uint64 // 0 if nothing was written
	LastSeq  uint64
	// LastHash and LastTime are the hash and time of record LastSeq.
	LastHash string
	LastTime time.Time
	// SHA256 is the hex SHA-256 of the bytes written.
	SHA256 string
}

// Export writes the records with fromSeq <= seq <= toSeq as JSON lines
// (each record's stored JSON followed by "\n"). fromSeq 0 means the first
// record still in the log, toSeq 0 the head when Export starts. It fails
// if records in the range are archived while it runs.
func (l *Log) Export(ctx context.Context, w io.Writer, fromSeq, toSeq uint64) (ExportStats, error) {
	s, err := l.State(ctx)
	if err != nil {
		return ExportStats{}, err
	}
	return l.export(ctx, w, s, fromSeq, toSeq)
}

func (l *Log) export(ctx context.Context, w io.Writer, s State, fromSeq, toSeq uint64) (ExportStats, error) {
	if toSeq == 0 || toSeq > s.Seq {
		toSeq = s.Seq
	}
	fromSeq = max(fromSeq, s.ArchivedSeq+1)
	h := sha256.New()
	st := ExportStats{}
	mw := io.MultiWriter(w, h)
	next := fromSeq
	for next <= toSeq {
		recs, err := l.Range(ctx, next, int(min(toSeq-next+1, pageSize)))
		if err != nil {
			return st, err
		}
		if len(recs) == 0 {
			return st, fmt.Errorf("%w: records %d..%d are missing (archived during export?)", ErrInvalidRange, next, toSeq)
		}
		for _, r := range recs {
			if r.Seq != next {
				return st, fmt.Errorf("%w: expected record %d, found %d (archived during export?)", ErrInvalidRange, next, r.Seq)
			}
			if _, err := mw.Write(append(r.line, '\n')); err != nil {
				return st, fmt.Errorf("eventlog: export: %w", err)
			}
			if st.Records == 0 {
				st.FirstSeq = r.Seq
			}
			st.Records++
			st.LastSeq, st.LastHash, st.LastTime = r.Seq, r.Hash, r.Time
			next++
		}
	}
	st.SHA256 = hex.EncodeToString(h.Sum(nil))
	return st, nil
}
