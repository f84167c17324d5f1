package eventlog

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// VerifyError names the first record of an export that fails verification.
type VerifyError struct {
	// Seq is the seq the bad record claims (0 if it has none).
	Seq uint64
	// Line is its 1-based line number in the export.
	Line int
	// Reason says what is wrong.
	Reason string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("eventlog: record %d (line %d): %s", e.Seq, e.Line, e.Reason)
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Partial accepts an export that starts after seq 1 although no
	// archive.anchor record in it confirms where it starts: the first
	// record's prev_hash is then taken on trust (Report.StartConfirmed is
	// false).
	Partial bool
	// StartPrevHash, if set, is the prev_hash the first record must have
	// (for example the head hash of the previous archive file). It
	// confirms the start like an archive.anchor record does.
	StartPrevHash string
	// Signers are the SPIFFE IDs allowed to sign checkpoints and export
	// trailers. Empty means DefaultSigners(roots): the server ID
	// spiffe://<td>/spire/server of the bundle's trust domain. Set, it
	// replaces the default.
	Signers []string
	// AllowUnsignedTail accepts an export that does not end with an export
	// trailer: the records after the last signature are then only linked
	// by hashes (Report.Unsigned, Report.ExportSigned false). Without it
	// such an export fails at its first unsigned record (or at its last
	// record, if that is a checkpoint): it may have been truncated.
	AllowUnsignedTail bool
	// ExpectHead, if set, is a position the export must reach: the record
	// with that seq must be in it with that hash.
	ExpectHead *Head
	// MaxAge, if set, is how old the export's last signature may be by the
	// verifier's clock.
	MaxAge time.Duration
	// Now is the verifier's clock (default time.Now): no signature may be
	// dated more than MaxClockSkew after it.
	Now func() time.Time
}

// Report summarises a verified export.
type Report struct {
	Records  int
	FirstSeq uint64
	LastSeq  uint64
	// StartPrevHash is the first record's prev_hash; HeadHash is the last
	// record's hash.
	StartPrevHash string
	HeadHash      string
	// StartConfirmed is true when the export starts at seq 1, or its start
	// matches VerifyOptions.StartPrevHash or an archive.anchor record in
	// the export.
	StartConfirmed bool
	FirstTime      time.Time
	LastTime       time.Time
	// Checkpoints is the number of checkpoint records; LastCheckpointSeq
	// the seq of the last one (0 if none) and SignedThrough the tree size
	// it signs.
	Checkpoints       int
	LastCheckpointSeq uint64
	SignedThrough     uint64
	// Unsigned is the number of records after the last checkpoint or
	// trailer: they are linked by hashes but no signature covers them.
	Unsigned int
	// Trailers counts export trailers; ExportSigned is true when the
	// export ends with one. ExportTime, ExportSigner and LogSize are
	// from the last trailer: when it was signed, by whom, and how many
	// records the log held then (more than LastSeq for a range export).
	Trailers     int
	ExportSigned bool
	ExportTime   time.Time
	ExportSigner string
	LogSize      uint64
	// Signers are the distinct SPIFFE IDs of checkpoint and trailer
	// signing certificates, in order of first appearance.
	Signers []string
	// Kinds counts the records by kind.
	Kinds map[string]int
}

// Verify checks a JSON-lines export offline: each line is a record of
// schema version 1 in strict canonical JSON; seqs continue without gaps;
// every hash matches the record's canonical encoding; every prev_hash is
// the previous record's hash; times never decrease; every checkpoint and
// export trailer commits to the records before it and is signed by an
// allowed signer (opts.Signers, default the server of the roots' trust
// domain) whose end-entity certificate is valid and chains to roots at
// the signature's time; and the export ends with a trailer (unless
// opts.AllowUnsignedTail). It returns a *VerifyError naming the first bad
// record, or another error if r cannot be read or no signer can be chosen
// (ErrNoDefaultSigner).
//
// An export may start after seq 1 (the records before were archived). Its
// first prev_hash is then confirmed by opts.StartPrevHash or by an
// archive.anchor record later in the export; otherwise Verify fails at the
// first record unless opts.Partial is set.
func Verify(r io.Reader, roots []*x509.Certificate, opts VerifyOptions) (Report, error) {
	v := newVerifier(roots, opts)
	if len(v.allowed) == 0 && len(roots) > 0 {
		var err error
		if v.allowed, err = DefaultSigners(roots); err != nil {
			return v.rep, err
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes+1)
	line := 0
	for sc.Scan() {
		line++
		if err := v.record(sc.Bytes(), line); err != nil {
			return v.rep, err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return v.rep, &VerifyError{Seq: v.rep.LastSeq + 1, Line: line + 1, Reason: fmt.Sprintf("line longer than %d bytes", MaxLineBytes)}
		}
		return v.rep, fmt.Errorf("eventlog: read export: %w", err)
	}
	return v.finish()
}

type verifier struct {
	roots   *x509.CertPool
	opts    VerifyOptions
	rep     Report
	last    Record
	signers map[string]bool
	allowed []string
	now     func() time.Time

	lastLine          int       // line of the last record or trailer
	firstUnsigned     uint64    // first record after the last signature
	firstUnsignedLine int       // and its line
	lastSigned        time.Time // time of the last checkpoint or trailer
	endsWithTrailer   bool
	headSeen          bool   // ExpectHead's record was read
	pendingSigner     string // signer of the checkpoint being read
}

func newVerifier(roots []*x509.Certificate, opts VerifyOptions) *verifier {
	pool := x509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	if len(roots) == 0 {
		pool = nil
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &verifier{roots: pool, opts: opts, signers: map[string]bool{}, rep: Report{Kinds: map[string]int{}},
		allowed: slices.Clone(opts.Signers), now: now}
}

// claimedSeq extracts a seq from a line that failed to parse, for the
// error message.
func claimedSeq(line []byte) uint64 {
	var s struct {
		Seq uint64 `json:"seq"`
	}
	_ = json.Unmarshal(line, &s)
	return s.Seq
}

func (v *verifier) record(line []byte, n int) error {
	line = bytes.TrimSuffix(line, []byte("\r"))
	fail := func(seq uint64, format string, args ...any) error {
		return &VerifyError{Seq: seq, Line: n, Reason: fmt.Sprintf(format, args...)}
	}
	if len(bytes.TrimSpace(line)) == 0 {
		return fail(v.rep.LastSeq+1, "empty line")
	}
	v.lastLine = n
	if IsTrailer(line) {
		return v.trailer(line, n)
	}
	r, err := ParseRecord(line)
	if err != nil {
		return fail(claimedSeq(line), "%v", trimPrefix(err))
	}
	if r.V != SchemaVersion {
		return fail(r.Seq, "unsupported schema version %d (this verifier knows version %d)", r.V, SchemaVersion)
	}
	if !wellFormedKind(string(r.Kind)) {
		return fail(r.Seq, "invalid kind %q", r.Kind)
	}
	first := v.rep.Records == 0
	switch {
	case r.Seq == 0:
		return fail(r.Seq, "seq 0: seqs start at 1")
	case first && r.Seq == 1:
		if r.PrevHash != GenesisHash {
			return fail(r.Seq, "prev_hash of the first record is %q, want %s", r.PrevHash, GenesisHash)
		}
		v.rep.StartConfirmed = true
	case first:
		if v.opts.StartPrevHash != "" {
			if r.PrevHash != v.opts.StartPrevHash {
				return fail(r.Seq, "prev_hash is %s, but the export should continue from %s", r.PrevHash, v.opts.StartPrevHash)
			}
			v.rep.StartConfirmed = true
		}
	case r.Seq != v.last.Seq+1:
		return fail(r.Seq, "seq %d follows seq %d: want %d (records missing or out of order)", r.Seq, v.last.Seq, v.last.Seq+1)
	case r.PrevHash != v.last.Hash:
		return fail(r.Seq, "prev_hash %s is not the hash of record %d (%s)", r.PrevHash, v.last.Seq, v.last.Hash)
	}
	if !isHexHash(r.PrevHash) {
		return fail(r.Seq, "prev_hash %q is not a lower-case hex SHA-256", r.PrevHash)
	}
	if got := ComputeHash(r); r.Hash != got {
		return fail(r.Seq, "hash mismatch: the record says %s but its contents hash to %s (edited record)", r.Hash, got)
	}
	if !first && r.Time.Before(v.last.Time) {
		return fail(r.Seq, "time %s is before the previous record's %s", formatTime(r.Time), formatTime(v.last.Time))
	}
	if (r.Kind == KindCheckpoint) != (r.Checkpoint != nil) {
		return fail(r.Seq, "a checkpoint field must be present exactly on checkpoint records")
	}
	if eh := v.opts.ExpectHead; eh != nil && r.Seq == eh.Seq {
		if r.Hash != eh.Hash {
			return fail(r.Seq, "hash %s, but the expected head says %s: this history differs from the one pinned", r.Hash, eh.Hash)
		}
		v.headSeen = true
	}
	if r.Checkpoint != nil {
		if err := v.checkpoint(r); err != nil {
			return fail(r.Seq, "checkpoint: %s", err)
		}
	}
	if r.Kind == KindArchiveAnchor {
		if err := v.anchor(r); err != nil {
			return fail(r.Seq, "archive anchor: %s", err)
		}
	}

	if first {
		v.rep.FirstSeq, v.rep.StartPrevHash, v.rep.FirstTime = r.Seq, r.PrevHash, r.Time
	}
	v.rep.Records++
	v.rep.LastSeq, v.rep.HeadHash, v.rep.LastTime = r.Seq, r.Hash, r.Time
	v.rep.Kinds[string(r.Kind)]++
	r.line = nil
	v.last = r
	v.endsWithTrailer = false
	if r.Checkpoint != nil {
		v.noteSigner(v.pendingSigner, r.Time)
		v.rep.Checkpoints++
		v.rep.LastCheckpointSeq = r.Seq
		v.rep.SignedThrough = r.Checkpoint.TreeSize
		return nil
	}
	v.rep.Unsigned++
	if v.rep.Unsigned == 1 {
		v.firstUnsigned, v.firstUnsignedLine = r.Seq, n
	}
	return nil
}

func (v *verifier) finish() (Report, error) {
	if v.rep.Records > 0 && !v.rep.StartConfirmed && !v.opts.Partial {
		return v.rep, &VerifyError{Seq: v.rep.FirstSeq, Line: 1, Reason: fmt.Sprintf(
			"the export starts at seq %d, and nothing confirms its prev_hash %s: no archive.anchor record in it says records up to %d were archived with that hash; "+
				"verify it after the archive it continues, give the expected starting hash, or accept it as a partial export",
			v.rep.FirstSeq, v.rep.StartPrevHash, v.rep.FirstSeq-1)}
	}
	if err := v.finishTail(); err != nil {
		return v.rep, err
	}
	return v.rep, nil
}

func (v *verifier) checkpoint(r Record) error {
	cp := r.Checkpoint
	if cp.TreeSize != r.Seq-1 {
		return fmt.Errorf("tree_size %d, want %d (the records before it)", cp.TreeSize, r.Seq-1)
	}
	if cp.HeadHash != r.PrevHash {
		return fmt.Errorf("head_hash %s is not the record's prev_hash %s", cp.HeadHash, r.PrevHash)
	}
	if strings.ContainsAny(r.Subject, "\n\r") {
		return errors.New("subject contains a line break")
	}
	signer, err := v.checkSigner(cp.Chain, cp.SigAlg, cp.Signature, CheckpointBody(r.Subject, cp.TreeSize, cp.HeadHash, r.Time), r.Time)
	if err != nil {
		return err
	}
	v.pendingSigner = signer
	return nil
}

// Details keys of archive.anchor records.
const (
	DetailArchivedFrom   = "archived_from"  // first archived seq
	DetailArchivedSeq    = "archived_seq"   // last archived seq
	DetailArchivedHash   = "archived_hash"  // hash of the last archived record
	DetailArchivedCount  = "archived_count" // number of records archived
	DetailArchivedSHA256 = "archive_sha256" // SHA-256 of the export file of the archived records
)

func (v *verifier) anchor(r Record) error {
	seq, err := strconv.ParseUint(r.Details[DetailArchivedSeq], 10, 64)
	if err != nil || seq == 0 {
		return fmt.Errorf("%s %q is not a seq", DetailArchivedSeq, r.Details[DetailArchivedSeq])
	}
	h := r.Details[DetailArchivedHash]
	if !isHexHash(h) {
		return fmt.Errorf("%s %q is not a hex SHA-256", DetailArchivedHash, h)
	}
	if seq >= r.Seq {
		return fmt.Errorf("archives up to seq %d, not before itself", seq)
	}
	firstSeq, startPrev := v.rep.FirstSeq, v.rep.StartPrevHash
	if v.rep.Records == 0 {
		// The export starts with this anchor (everything before it was
		// archived): its own fields confirm its prev_hash, and they are
		// bound by its hash to the records after it.
		firstSeq, startPrev = r.Seq, r.PrevHash
	}
	if seq == firstSeq-1 && h == startPrev {
		v.rep.StartConfirmed = true
	}
	return nil
}

func isHexHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// trimPrefix drops the package prefix from a parse error for a VerifyError
// reason (which gets its own prefix).
func trimPrefix(err error) string {
	s := err.Error()
	if after, ok := bytes.CutPrefix([]byte(s), []byte("eventlog: ")); ok {
		return string(after)
	}
	return s
}
