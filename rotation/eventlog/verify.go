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
	// Signers, if set, are the SPIFFE IDs allowed to sign checkpoints
	// (for example spiffe://example.org/spire/server).
	Signers []string
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
	// Unsigned is the number of records after the last checkpoint record:
	// they are linked by hashes but no signature covers them yet.
	Unsigned int
	// Signers are the distinct SPIFFE IDs (or subjects) of checkpoint
	// signing certificates, in order of first appearance.
	Signers []string
	// Kinds counts the records by kind.
	Kinds map[string]int
}

// Verify checks a JSON-lines export offline: each line is a record of
// schema version 1 in strict canonical JSON; seqs continue without gaps;
// every hash matches the record's canonical encoding; every prev_hash is
// the previous record's hash; times never decrease; every checkpoint
// commits to the records before it and is signed by a certificate that
// chains to roots at the checkpoint's time. It returns a *VerifyError
// naming the first bad record, or another error if r cannot be read.
//
// An export may start after seq 1 (the records before were archived). Its
// first prev_hash is then confirmed by opts.StartPrevHash or by an
// archive.anchor record later in the export; otherwise Verify fails at the
// first record unless opts.Partial is set.
func Verify(r io.Reader, roots []*x509.Certificate, opts VerifyOptions) (Report, error) {
	v := newVerifier(roots, opts)
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
}

func newVerifier(roots []*x509.Certificate, opts VerifyOptions) *verifier {
	pool := x509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	if len(roots) == 0 {
		pool = nil
	}
	return &verifier{roots: pool, opts: opts, signers: map[string]bool{}, rep: Report{Kinds: map[string]int{}}}
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
	r, err := ParseRecord(line)
	if err != nil {
		return fail(claimedSeq(line), "%v", trimPrefix(err))
	}
	if r.V != SchemaVersion {
		return fail(r.Seq, "unsupported schema version %d (this verifier knows version %d)", r.V, SchemaVersion)
	}
	if !wellFormedKind(r.Kind) {
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
	v.rep.Kinds[r.Kind]++
	v.rep.Unsigned++
	r.line = nil
	v.last = r
	return nil
}

func (v *verifier) finish() (Report, error) {
	if v.rep.Records > 0 && !v.rep.StartConfirmed && !v.opts.Partial {
		return v.rep, &VerifyError{Seq: v.rep.FirstSeq, Line: 1, Reason: fmt.Sprintf(
			"the export starts at seq %d, and nothing confirms its prev_hash %s: no archive.anchor record in it says records up to %d were archived with that hash; "+
				"verify it after the archive it continues, give the expected starting hash, or accept it as a partial export",
			v.rep.FirstSeq, v.rep.StartPrevHash, v.rep.FirstSeq-1)}
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
	if len(cp.Chain) == 0 {
		return errors.New("no certificate chain")
	}
	certs := make([]*x509.Certificate, len(cp.Chain))
	for i, der := range cp.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("certificate %d of the chain: %v", i, err)
		}
		certs[i] = c
	}
	leaf := certs[0]
	alg, ok := sigAlgByName[cp.SigAlg]
	if !ok {
		return fmt.Errorf("unsupported signature algorithm %q", cp.SigAlg)
	}
	body := CheckpointBody(r.Subject, cp.TreeSize, cp.HeadHash, r.Time)
	if err := leaf.CheckSignature(alg, body, cp.Signature); err != nil {
		return fmt.Errorf("bad signature: %v", err)
	}
	if v.roots == nil {
		return errors.New("no trust bundle to verify the signer against")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   r.Time,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("signer certificate (serial %s) does not chain to the trust bundle at %s: %v", leaf.SerialNumber.Text(16), formatTime(r.Time), err)
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return errors.New("signer certificate lacks the digitalSignature key usage")
	}
	signer := r.Subject
	if len(leaf.URIs) > 0 {
		signer = leaf.URIs[0].String()
	}
	if len(v.opts.Signers) > 0 && !slices.Contains(v.opts.Signers, signer) {
		return fmt.Errorf("signed by %s, which is not an allowed signer", signer)
	}
	if !v.signers[signer] {
		v.signers[signer] = true
		v.rep.Signers = append(v.rep.Signers, signer)
	}
	v.rep.Checkpoints++
	v.rep.LastCheckpointSeq = r.Seq
	v.rep.SignedThrough = cp.TreeSize
	v.rep.Unsigned = -1 // the checkpoint itself is counted below as 0
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
