package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors callers branch on with errors.Is.
var (
	// ErrNotFound: no item with that ID.
	ErrNotFound = errors.New("scheduler: not found")
	// ErrInvalid: the item is malformed (empty ID or kind, zero due time,
	// oversized payload, ...).
	ErrInvalid = errors.New("scheduler: invalid item")
	// ErrConflict: the item kept changing concurrently and the write gave
	// up after bounded retries. Retrying later is safe.
	ErrConflict = errors.New("scheduler: conflict")
	// ErrCorrupt: a stored value could not be decoded.
	ErrCorrupt = errors.New("scheduler: corrupt stored value")
	// ErrNotLeader: a fenced write failed because this replica's
	// leadership term has ended.
	ErrNotLeader = errors.New("scheduler: not leader")
)

// Limits on items.
const (
	// MaxIDLen bounds an item ID in bytes.
	MaxIDLen = 512
	// MaxKindLen bounds an item kind in bytes.
	MaxKindLen = 64
	// MaxPayload bounds an item payload in bytes.
	MaxPayload = 64 << 10
)

// Item is one durable piece of due work.
type Item struct {
	// ID names the item, e.g. "svid/<agent>/<entry>", "ca/x509/<id>",
	// "jwtkey/<kid>", "agent/<id>", "bundle/<td>", "vault/lease/<id>".
	// Scheduling an existing ID replaces that item.
	ID string
	// Kind selects the Handler.
	Kind string
	// DueAt is when the item should run.
	DueAt time.Time
	// NotAfter is when the credential the item renews expires (zero if
	// not applicable). It is informational: items run after it are logged.
	NotAfter time.Time
	// Payload is opaque to the scheduler (and never logged).
	Payload []byte
	// Attempt counts dispatches of this item that failed or did not
	// complete (handler error, leader lost mid-run). A handler's next item
	// normally leaves it 0.
	Attempt int
}

func (it Item) validate() error {
	switch {
	case it.ID == "":
		return fmt.Errorf("%w: empty ID", ErrInvalid)
	case len(it.ID) > MaxIDLen:
		return fmt.Errorf("%w: ID longer than %d bytes", ErrInvalid, MaxIDLen)
	case !utf8.ValidString(it.ID) || strings.ContainsRune(it.ID, 0):
		return fmt.Errorf("%w: ID %q is not valid UTF-8 without NUL", ErrInvalid, it.ID)
	case it.Kind == "":
		return fmt.Errorf("%w: %s: empty kind", ErrInvalid, it.ID)
	case len(it.Kind) > MaxKindLen || !utf8.ValidString(it.Kind):
		return fmt.Errorf("%w: %s: invalid kind", ErrInvalid, it.ID)
	case it.DueAt.IsZero():
		return fmt.Errorf("%w: %s: zero due time", ErrInvalid, it.ID)
	case len(it.Payload) > MaxPayload:
		return fmt.Errorf("%w: %s: payload larger than %d bytes", ErrInvalid, it.ID, MaxPayload)
	case it.Attempt < 0:
		return fmt.Errorf("%w: %s: negative attempt", ErrInvalid, it.ID)
	}
	return nil
}

// storedItem is the JSON form of an Item under items/<id>.
type storedItem struct {
	V        int    `json:"v"`
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	DueNs    int64  `json:"due_ns"`
	NotAfter int64  `json:"not_after_ns,omitempty"`
	Payload  []byte `json:"payload,omitempty"`
	Attempt  int    `json:"attempt,omitempty"`
}

const recordVersion = 1

func encodeItem(it Item) string {
	s := storedItem{
		V:       recordVersion,
		ID:      it.ID,
		Kind:    it.Kind,
		DueNs:   unixNanos(it.DueAt),
		Payload: it.Payload,
		Attempt: it.Attempt,
	}
	if !it.NotAfter.IsZero() {
		s.NotAfter = unixNanos(it.NotAfter)
	}
	b, err := json.Marshal(s)
	if err != nil {
		panic("scheduler: marshal item: " + err.Error()) // plain struct: cannot fail
	}
	return string(b)
}

func decodeItem(b []byte) (Item, error) {
	var s storedItem
	if err := json.Unmarshal(b, &s); err != nil {
		return Item{}, fmt.Errorf("%w: item: %w", ErrCorrupt, err)
	}
	if s.V != recordVersion {
		return Item{}, fmt.Errorf("%w: item %q: unknown version %d", ErrCorrupt, s.ID, s.V)
	}
	it := Item{
		ID:      s.ID,
		Kind:    s.Kind,
		DueAt:   time.Unix(0, s.DueNs).UTC(),
		Payload: s.Payload,
		Attempt: s.Attempt,
	}
	if s.NotAfter != 0 {
		it.NotAfter = time.Unix(0, s.NotAfter).UTC()
	}
	return it, nil
}

// inflightRecord is the value of inflight/<id>.
type inflightRecord struct {
	LeaderRev int64  `json:"leader_rev"`
	ItemRev   int64  `json:"item_rev"`
	Replica   string `json:"replica,omitempty"`
	ClaimedNs int64  `json:"claimed_ns"`
}

// unixNanos is t in Unix nanoseconds, clamped to [0, MaxInt64] so that it
// always fits the fixed-width due key.
func unixNanos(t time.Time) int64 {
	if t.Before(time.Unix(0, 0)) {
		return 0
	}
	if t.After(time.Unix(0, math.MaxInt64)) {
		return math.MaxInt64
	}
	return t.UnixNano()
}

// keys derives the etcd keys below one prefix.
type keys struct{ prefix string }

const (
	itemsDir    = "items/"
	dueDir      = "due/"
	inflightDir = "inflight/"
	leaderDir   = "leader"
	dueDigits   = 20
)

func (k keys) item(id string) string     { return k.prefix + itemsDir + id }
func (k keys) inflight(id string) string { return k.prefix + inflightDir + id }
func (k keys) items() string             { return k.prefix + itemsDir }
func (k keys) inflights() string         { return k.prefix + inflightDir }
func (k keys) dueIndex() string          { return k.prefix + dueDir }
func (k keys) election() string          { return k.prefix + leaderDir }

// due is the due-index key of an item due at ns.
func (k keys) due(ns int64, id string) string { return k.dueBound(ns) + id }

// dueBound is the prefix of every due key at ns: keys below dueBound(ns)
// are due strictly before ns.
func (k keys) dueBound(ns int64) string {
	return k.prefix + dueDir + fmt.Sprintf("%0*d", dueDigits, ns) + "/"
}

// parseDue splits a due-index key into its due time and item ID.
func (k keys) parseDue(key string) (int64, string, error) {
	rest, ok := strings.CutPrefix(key, k.prefix+dueDir)
	if !ok || len(rest) < dueDigits+2 || rest[dueDigits] != '/' {
		return 0, "", fmt.Errorf("%w: due key %q", ErrCorrupt, key)
	}
	ns, err := strconv.ParseInt(rest[:dueDigits], 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("%w: due key %q: %w", ErrCorrupt, key, err)
	}
	return ns, rest[dueDigits+1:], nil
}
