// Package eventlog is Signet's tamper-evident rotation event log: an
// append-only, hash-chained sequence of records in etcd (CA transitions,
// SVID and agent events, JWT key and Vault lease events), with signed
// checkpoints, a follower built on etcd watches, JSON-lines export, offline
// verification and archiving of old records.
//
// The record schema, the hash and the checkpoint signature are specified
// byte-exactly in docs/audit-log.md; this package is the reference
// implementation of that document.
package eventlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// SchemaVersion is the value of the "v" field of every record this package
// writes and the only one its verifier accepts.
const SchemaVersion = 1

// GenesisHash is the prev_hash of the record with seq 1.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Kind is the kind of a record this version of Signet writes; the kinds
// and what each means are listed in docs/audit-log.md ("Record kinds").
// Records read back keep their kind as a plain string, since a newer Signet
// may write kinds this one does not know.
type Kind string

// Record kinds.
const (
	KindCAPrepared           Kind = "ca.prepared"
	KindCAActivated          Kind = "ca.activated"
	KindCATainted            Kind = "ca.tainted"
	KindCARevoked            Kind = "ca.revoked"
	KindSVIDIssued           Kind = "svid.issued"
	KindAgentAttested        Kind = "agent.attested"
	KindAgentRenewed         Kind = "agent.renewed"
	KindAgentEvicted         Kind = "agent.evicted"
	KindAgentBanned          Kind = "agent.banned"
	KindJWTKeyPrepared       Kind = "jwtkey.prepared"
	KindJWTKeyActivated      Kind = "jwtkey.activated"
	KindJWTKeyTainted        Kind = "jwtkey.tainted"
	KindJWTKeyRevoked        Kind = "jwtkey.revoked"
	KindVaultLeaseIssued     Kind = "vault.lease.issued"
	KindVaultLeaseRenewed    Kind = "vault.lease.renewed"
	KindVaultLeaseRevoked    Kind = "vault.lease.revoked"
	KindVaultLeaseExpired    Kind = "vault.lease.expired"
	KindSecretVersionChanged Kind = "secret.version.changed"
	KindCheckpoint           Kind = "checkpoint"
	KindArchiveAnchor        Kind = "archive.anchor"
)

// KindVaultLeasePrefix starts the vault.lease.* family.
const KindVaultLeasePrefix = "vault.lease."

// Kinds returns every Kind, in the order of docs/audit-log.md.
func Kinds() []Kind {
	return []Kind{
		KindCAPrepared, KindCAActivated, KindCATainted, KindCARevoked,
		KindJWTKeyPrepared, KindJWTKeyActivated, KindJWTKeyTainted, KindJWTKeyRevoked,
		KindSVIDIssued,
		KindAgentAttested, KindAgentRenewed, KindAgentEvicted, KindAgentBanned,
		KindVaultLeaseIssued, KindVaultLeaseRenewed, KindVaultLeaseRevoked, KindVaultLeaseExpired,
		KindSecretVersionChanged,
		KindCheckpoint, KindArchiveAnchor,
	}
}

// Valid reports whether k is one of the Kind constants.
func (k Kind) Valid() bool { return slices.Contains(Kinds(), k) }

// String returns k as written in a record.
func (k Kind) String() string { return string(k) }

// wellFormedKind reports whether kind has the shape of a kind: dot-separated
// lower-case words. The verifier accepts well-formed kinds it does not know
// (written by a newer Signet with the same schema version).
func wellFormedKind(kind string) bool {
	if kind == "" || len(kind) > 64 {
		return false
	}
	for w := range strings.SplitSeq(kind, ".") {
		if !isWord(w) {
			return false
		}
	}
	return true
}

func isWord(w string) bool {
	if w == "" {
		return false
	}
	for _, c := range w {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// Event is what a caller appends; the log assigns seq, time and the hashes.
type Event struct {
	Kind    Kind
	Subject string // SPIFFE ID or trust domain the event is about
	Actor   string // who caused it: a SPIFFE ID, "admin", "scheduler", ...
	Serial  string // credential serial number (hex), if any
	KeyID   string // key ID (CA subject key ID, JWT kid), if any
	Details map[string]string
}

// Checkpoint is the signed part of a checkpoint record. It commits to the
// log of TreeSize records whose last record has hash HeadHash; TreeSize is
// always the checkpoint record's seq-1 and HeadHash its prev_hash.
type Checkpoint struct {
	TreeSize uint64 `json:"tree_size"`
	HeadHash string `json:"head_hash"`
	// SigAlg names the signature algorithm as crypto/x509 does:
	// "ECDSA-SHA256", "ECDSA-SHA384", "ECDSA-SHA512", "SHA256-RSA",
	// "SHA384-RSA", "SHA512-RSA" or "Ed25519".
	SigAlg    string `json:"sig_alg"`
	Signature []byte `json:"signature"` // base64 in JSON
	// Chain is the signer's certificate chain, leaf first, DER (base64 in
	// JSON). It must chain to the trust bundle at the record's time.
	Chain [][]byte `json:"chain"`
}

// Record is one entry of the log.
type Record struct {
	V          int               // schema version (1)
	Seq        uint64            // 1, 2, 3, ... without gaps
	Time       time.Time         // UTC; never earlier than the previous record's
	Kind       Kind              // a Kind constant, or one a newer Signet writes
	Subject    string            // SPIFFE ID or trust domain
	Actor      string            // who caused the event
	Serial     string            // credential serial, if any
	KeyID      string            // key ID, if any
	Details    map[string]string // optional
	Checkpoint *Checkpoint       // set exactly on checkpoint records
	PrevHash   string            // hash of the record seq-1 (GenesisHash for seq 1)
	Hash       string            // hex SHA-256 of the canonical encoding

	// line is the exact JSON the record was read from or written as.
	line []byte
}

// Line returns the record's JSON line (without the trailing newline): the
// bytes stored in etcd when the record was read from the log or an export,
// or a fresh encoding otherwise.
func (r Record) Line() []byte {
	if r.line != nil {
		return slices.Clone(r.line)
	}
	b, err := r.encode()
	if err != nil {
		return nil
	}
	return b
}

// wire is the JSON form of a record; the field order is the order in the
// JSON line.
type wire struct {
	V          int               `json:"v"`
	Seq        uint64            `json:"seq"`
	Time       string            `json:"time"`
	Kind       Kind              `json:"kind"`
	Subject    string            `json:"subject,omitempty"`
	Actor      string            `json:"actor,omitempty"`
	Serial     string            `json:"serial,omitempty"`
	KeyID      string            `json:"key_id,omitempty"`
	Details    map[string]string `json:"details,omitempty"`
	Checkpoint *Checkpoint       `json:"checkpoint,omitempty"`
	PrevHash   string            `json:"prev_hash"`
	Hash       string            `json:"hash"`
}

// formatTime is the one accepted rendering of a record time.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// MarshalJSON encodes the record as its JSON line.
func (r Record) MarshalJSON() ([]byte, error) { return r.encode() }

func (r Record) encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(wire{
		V: r.V, Seq: r.Seq, Time: formatTime(r.Time), Kind: r.Kind,
		Subject: r.Subject, Actor: r.Actor, Serial: r.Serial, KeyID: r.KeyID,
		Details: r.Details, Checkpoint: r.Checkpoint, PrevHash: r.PrevHash, Hash: r.Hash,
	}); err != nil {
		return nil, fmt.Errorf("eventlog: encode record %d: %w", r.Seq, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON parses a JSON line strictly (see ParseRecord).
func (r *Record) UnmarshalJSON(b []byte) error {
	rec, err := ParseRecord(b)
	if err != nil {
		return err
	}
	*r = rec
	return nil
}

// MaxLineBytes bounds the size of one JSON line the parser accepts.
const MaxLineBytes = 1 << 20

// ParseRecord parses one JSON line strictly: valid UTF-8, one JSON object,
// no unknown or duplicate fields, no trailing data, a time in the canonical
// RFC 3339 UTC form. It does not check the hash (see Verify); it checks
// only the shape.
func ParseRecord(line []byte) (Record, error) {
	if len(line) > MaxLineBytes {
		return Record{}, fmt.Errorf("eventlog: record is %d bytes, more than %d", len(line), MaxLineBytes)
	}
	if !utf8.Valid(line) {
		return Record{}, errors.New("eventlog: record is not valid UTF-8")
	}
	if err := checkKeys(line); err != nil {
		return Record{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var w wire
	if err := dec.Decode(&w); err != nil {
		return Record{}, fmt.Errorf("eventlog: invalid record JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Record{}, errors.New("eventlog: invalid record JSON: trailing data after the object")
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return Record{}, fmt.Errorf("eventlog: invalid record time %q: %w", w.Time, err)
	}
	if formatTime(t) != w.Time {
		return Record{}, fmt.Errorf("eventlog: record time %q is not in canonical form (want %q)", w.Time, formatTime(t))
	}
	return Record{
		V: w.V, Seq: w.Seq, Time: t.UTC(), Kind: w.Kind,
		Subject: w.Subject, Actor: w.Actor, Serial: w.Serial, KeyID: w.KeyID,
		Details: w.Details, Checkpoint: w.Checkpoint, PrevHash: w.PrevHash, Hash: w.Hash,
		line: slices.Clone(line),
	}, nil
}

var (
	recordFields     = fieldSet(wire{})
	checkpointFields = fieldSet(Checkpoint{})
)

// fieldSet lists the JSON member names of a struct.
func fieldSet(v any) map[string]bool {
	set := map[string]bool{}
	t := reflect.TypeOf(v)
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		set[name] = true
	}
	return set
}

// checkKeys rejects JSON with a repeated member name in any object
// (encoding/json would silently keep the last one), and member names of
// the record and checkpoint objects that are not spelt exactly as in the
// schema (encoding/json matches names case-insensitively).
func checkKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		obj     bool
		allowed map[string]bool // nil: any name
		keys    map[string]bool
		key     bool   // the next token in an object is a key
		last    string // the last key read
	}
	var stack []*frame
	for range len(b) + 1 { // every token consumes at least one byte
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("eventlog: invalid record JSON: %w", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k, _ := tok.(string)
			if top.keys[k] {
				return fmt.Errorf("eventlog: invalid record JSON: duplicate field %q", k)
			}
			if top.allowed != nil && !top.allowed[k] {
				return fmt.Errorf("eventlog: invalid record JSON: unknown field %q", k)
			}
			top.keys[k] = true
			top.key = false
			top.last = k
			continue
		}
		if top != nil && top.obj {
			top.key = true // this token is a value; a key follows
		}
		switch tok {
		case json.Delim('{'):
			var allowed map[string]bool
			switch {
			case len(stack) == 0:
				allowed = recordFields
			case len(stack) == 1 && top.last == "checkpoint":
				allowed = checkpointFields
			}
			stack = append(stack, &frame{obj: true, allowed: allowed, keys: map[string]bool{}, key: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'), json.Delim('}'):
			stack = stack[:len(stack)-1]
		}
	}
	return errors.New("eventlog: invalid record JSON: too many tokens")
}

// ComputeHash returns the record's hash: the lower-case hex SHA-256 of its
// canonical encoding (docs/audit-log.md, "Record hash"). The Hash field
// itself is not part of the encoding.
func ComputeHash(r Record) string {
	sum := sha256.Sum256(canonical(r))
	return hex.EncodeToString(sum[:])
}

// hashDomain starts every canonical encoding.
const hashDomain = "signet.audit.v1.record\n"

// canonical is the byte string a record's hash is computed over:
//
//	"signet.audit.v1.record\n"
//	u64(v) u64(seq) str(time) str(kind) str(subject) str(actor)
//	str(serial) str(key_id)
//	u32(#details) { str(key) str(value) }  keys in ascending byte order
//	checkpoint: u8(0) if absent, else
//	  u8(1) u64(tree_size) str(head_hash) str(sig_alg) str(signature)
//	  u32(#chain) { str(cert) }
//	str(prev_hash)
//
// where u8/u32/u64 are big-endian unsigned integers and str(x) is u32(len(x))
// followed by the bytes of x (UTF-8 for text, raw bytes for the signature
// and certificates).
func canonical(r Record) []byte {
	b := make([]byte, 0, 512)
	b = append(b, hashDomain...)
	b = binary.BigEndian.AppendUint64(b, uint64(int64(r.V)))
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = appendStr(b, formatTime(r.Time))
	b = appendStr(b, string(r.Kind))
	b = appendStr(b, r.Subject)
	b = appendStr(b, r.Actor)
	b = appendStr(b, r.Serial)
	b = appendStr(b, r.KeyID)
	keys := make([]string, 0, len(r.Details))
	for k := range r.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys) // Go string order is byte order
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = appendStr(b, k)
		b = appendStr(b, r.Details[k])
	}
	if cp := r.Checkpoint; cp == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, cp.TreeSize)
		b = appendStr(b, cp.HeadHash)
		b = appendStr(b, cp.SigAlg)
		b = appendStr(b, string(cp.Signature))
		b = binary.BigEndian.AppendUint32(b, uint32(len(cp.Chain)))
		for _, c := range cp.Chain {
			b = appendStr(b, string(c))
		}
	}
	b = appendStr(b, r.PrevHash)
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// Limits on what Append accepts (a record stays well below etcd's request
// size limit).
const (
	maxFieldBytes  = 2048
	maxDetails     = 32
	maxDetailBytes = 1024
	maxRecordBytes = 64 << 10
)

func validText(what, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("eventlog: %s is %d bytes, more than %d", what, len(s), limit)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("eventlog: %s is not valid UTF-8", what)
	}
	return nil
}

// validate checks an event before it is appended.
func (e Event) validate() error {
	if !e.Kind.Valid() {
		return fmt.Errorf("eventlog: unknown event kind %q", e.Kind)
	}
	if e.Kind == KindCheckpoint || e.Kind == KindArchiveAnchor {
		return fmt.Errorf("eventlog: %s records are written by the log itself", e.Kind)
	}
	return e.validateFields()
}

func (e Event) validateFields() error {
	for _, f := range []struct{ what, v string }{
		{"subject", e.Subject}, {"actor", e.Actor}, {"serial", e.Serial}, {"key_id", e.KeyID},
	} {
		if err := validText(f.what, f.v, maxFieldBytes); err != nil {
			return err
		}
	}
	if len(e.Details) > maxDetails {
		return fmt.Errorf("eventlog: %d details, more than %d", len(e.Details), maxDetails)
	}
	for k, v := range e.Details {
		if k == "" {
			return errors.New("eventlog: empty details key")
		}
		if err := validText("details key", k, maxDetailBytes); err != nil {
			return err
		}
		if err := validText("details value of "+k, v, maxDetailBytes); err != nil {
			return err
		}
	}
	return nil
}
