package eventlog

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// An export trailer is the last line of an export made by ExportSigned: a
// signature, made when the export was taken, over the records it ends
// with. Unlike a checkpoint record it is not part of the stored log or
// its hash chain, so it can cover any range (--to-seq, an archive file).
// See docs/audit-log.md, "Export trailer".
const (
	// TrailerType is the value of a trailer line's "trailer" member.
	TrailerType = "export.checkpoint"
	// TrailerVersion is the trailer's "v"; the verifier rejects others.
	TrailerVersion = 1
)

// trailerDomain starts every signed trailer body (distinct from
// checkpointDomain, so neither signature can stand for the other).
const trailerDomain = "signet.audit.v1.export"

// trailerPrefix starts every trailer line (records start with {"v":).
var trailerPrefix = []byte(`{"trailer":`)

// Trailer is the signed statement that ends an export: at Time the log of
// Subject held LogSize records, and the exported records end with record
// TreeSize, whose hash is HeadHash.
type Trailer struct {
	V         int
	Time      time.Time
	Subject   string
	TreeSize  uint64
	HeadHash  string
	LogSize   uint64
	SigAlg    string
	Signature []byte
	Chain     [][]byte
}

// trailerWire is the JSON form; the field order is the order in the line.
type trailerWire struct {
	Trailer   string   `json:"trailer"`
	V         int      `json:"v"`
	Time      string   `json:"time"`
	Subject   string   `json:"subject"`
	TreeSize  uint64   `json:"tree_size"`
	HeadHash  string   `json:"head_hash"`
	LogSize   uint64   `json:"log_size"`
	SigAlg    string   `json:"sig_alg"`
	Signature []byte   `json:"signature"`
	Chain     [][]byte `json:"chain"`
}

// TrailerBody is the message a trailer signature is over:
//
//	signet.audit.v1.export\n
//	<subject>\n
//	<tree_size in decimal>\n
//	<head_hash>\n
//	<log_size in decimal>\n
//	<time, RFC 3339 UTC as in the trailer>\n
func TrailerBody(subject string, treeSize uint64, headHash string, logSize uint64, t time.Time) []byte {
	var b strings.Builder
	b.WriteString(trailerDomain + "\n")
	b.WriteString(subject + "\n")
	b.WriteString(strconv.FormatUint(treeSize, 10) + "\n")
	b.WriteString(headHash + "\n")
	b.WriteString(strconv.FormatUint(logSize, 10) + "\n")
	b.WriteString(formatTime(t) + "\n")
	return []byte(b.String())
}

// IsTrailer reports whether an export line is a trailer line rather than a
// record.
func IsTrailer(line []byte) bool { return bytes.HasPrefix(line, trailerPrefix) }

// Line returns the trailer's JSON line (without the trailing newline).
func (t Trailer) Line() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(trailerWire{
		Trailer: TrailerType, V: t.V, Time: formatTime(t.Time), Subject: t.Subject,
		TreeSize: t.TreeSize, HeadHash: t.HeadHash, LogSize: t.LogSize,
		SigAlg: t.SigAlg, Signature: t.Signature, Chain: t.Chain,
	})
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// ParseTrailer parses a trailer line strictly: it must be exactly the
// encoding Line gives for the values it holds (so no unknown, duplicate or
// reordered members, no other spacing), of a known type and version.
func ParseTrailer(line []byte) (Trailer, error) {
	if len(line) > MaxLineBytes {
		return Trailer{}, fmt.Errorf("eventlog: trailer is %d bytes, more than %d", len(line), MaxLineBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var w trailerWire
	if err := dec.Decode(&w); err != nil {
		return Trailer{}, fmt.Errorf("eventlog: invalid trailer JSON: %w", err)
	}
	if w.Trailer != TrailerType {
		return Trailer{}, fmt.Errorf("eventlog: unknown trailer type %q (this verifier knows %q)", w.Trailer, TrailerType)
	}
	if w.V != TrailerVersion {
		return Trailer{}, fmt.Errorf("eventlog: unsupported trailer version %d (this verifier knows version %d)", w.V, TrailerVersion)
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return Trailer{}, fmt.Errorf("eventlog: invalid trailer time %q: %w", w.Time, err)
	}
	tr := Trailer{
		V: w.V, Time: t.UTC(), Subject: w.Subject, TreeSize: w.TreeSize, HeadHash: w.HeadHash,
		LogSize: w.LogSize, SigAlg: w.SigAlg, Signature: w.Signature, Chain: w.Chain,
	}
	if !bytes.Equal(tr.Line(), line) {
		return Trailer{}, errors.New("eventlog: trailer is not in canonical form (members, order and spacing exactly as written by the server)")
	}
	return tr, nil
}

// ErrCannotSign is returned when ExportSigned has no key it can sign a
// trailer with (no server SVID yet, or a key type checkpoints do not
// support, such as pure ML-DSA). Nothing was written.
var ErrCannotSign = errors.New("eventlog: cannot sign the export trailer")

// ExportSigned is Export followed by a trailer line signed with keys at
// the log's current time, over the last exported record and the log's
// size (its head seq) when the export started. Nothing is appended to the
// log. An empty export gets no trailer. The returned ExportStats describe
// the records only: SHA256 is the digest of the record lines, without the
// trailer (what ArchiveDigest expects). It fails with ErrCannotSign,
// before writing anything, when keys cannot sign.
func (l *Log) ExportSigned(ctx context.Context, w io.Writer, fromSeq, toSeq uint64, keys KeySource) (ExportStats, error) {
	k, err := trailerKey(keys)
	if err != nil {
		return ExportStats{}, err
	}
	s, err := l.State(ctx)
	if err != nil {
		return ExportStats{}, err
	}
	st, err := l.export(ctx, w, s, fromSeq, toSeq)
	if err != nil || st.Records == 0 {
		return st, err
	}
	return st, l.writeTrailer(w, k, st, s.Seq)
}

// signingKey is a key and chain checked to be able to sign a trailer.
type signingKey struct {
	signer crypto.Signer
	chain  []*x509.Certificate
}

func trailerKey(keys KeySource) (signingKey, error) {
	signer, chain, err := keys.CheckpointKey()
	switch {
	case err != nil:
		return signingKey{}, fmt.Errorf("%w: %w", ErrCannotSign, err)
	case signer == nil || len(chain) == 0:
		return signingKey{}, fmt.Errorf("%w: no signer or certificate chain", ErrCannotSign)
	case len(chain[0].URIs) != 1 || chain[0].URIs[0].Scheme != "spiffe":
		return signingKey{}, fmt.Errorf("%w: the certificate has no single SPIFFE ID", ErrCannotSign)
	}
	if _, _, err := signatureAlgorithm(signer.Public()); err != nil {
		return signingKey{}, fmt.Errorf("%w: %w", ErrCannotSign, err)
	}
	return signingKey{signer: signer, chain: chain}, nil
}

// writeTrailer signs and writes the trailer of an export described by st,
// taken when the log's head was logSize.
func (l *Log) writeTrailer(w io.Writer, k signingKey, st ExportStats, logSize uint64) error {
	t := l.now().UTC()
	if t.Before(st.LastTime) {
		t = st.LastTime // never before the records it covers (a replica's clock behind)
	}
	tr := Trailer{
		V: TrailerVersion, Time: t, Subject: "spiffe://" + k.chain[0].URIs[0].Host,
		TreeSize: st.LastSeq, HeadHash: st.LastHash, LogSize: logSize,
	}
	var err error
	tr.SigAlg, tr.Signature, err = signCheckpoint(rand.Reader, k.signer, TrailerBody(tr.Subject, tr.TreeSize, tr.HeadHash, tr.LogSize, tr.Time))
	if err != nil {
		return err
	}
	for _, c := range k.chain {
		tr.Chain = append(tr.Chain, c.Raw)
	}
	if _, err := w.Write(append(tr.Line(), '\n')); err != nil {
		return fmt.Errorf("eventlog: export: %w", err)
	}
	return nil
}
