package eventlog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrArchiveMismatch is returned when the digest given to ArchiveDigest is
// not that of the records it would delete.
var ErrArchiveMismatch = errors.New("eventlog: archive digest mismatch")

// ArchiveOption configures an archive.
type ArchiveOption func(*archiveConfig)

type archiveConfig struct {
	actor string
	keys  KeySource
}

// ArchiveActor records who archived in the archive.anchor record.
func ArchiveActor(actor string) ArchiveOption {
	return func(c *archiveConfig) { c.actor = actor }
}

// ArchiveSigned makes Archive end the archive file with an export trailer
// signed with keys (see ExportSigned), so that the file verifies on its
// own without an unsigned tail. The digest stays that of the records.
func ArchiveSigned(keys KeySource) ArchiveOption {
	return func(c *archiveConfig) { c.keys = keys }
}

// Archive exports the records up to uptoSeq that are still in the log to w
// (JSON lines, as Export), then deletes them from etcd and appends an
// archive.anchor record, in one transaction. If w has a Sync method it is
// called before anything is deleted; nothing is deleted if writing fails.
//
// The records after uptoSeq keep their prev_hash; the anchor record
// (details archived_from, archived_seq, archived_hash, archived_count,
// archive_sha256) commits in the chain to what was archived, which lets
// Verify confirm where an export of the remaining records starts. The
// archive file itself verifies on its own (it starts at seq 1, or after
// the previous archive).
func (l *Log) Archive(ctx context.Context, uptoSeq uint64, w io.Writer, opts ...ArchiveOption) (Record, error) {
	s, err := l.State(ctx)
	if err != nil {
		return Record{}, err
	}
	if err := checkArchiveRange(s, uptoSeq); err != nil {
		return Record{}, err
	}
	var cfg archiveConfig
	for _, o := range opts {
		o(&cfg)
	}
	var key signingKey
	if cfg.keys != nil {
		if key, err = trailerKey(cfg.keys); err != nil {
			return Record{}, err
		}
	}
	st, err := l.export(ctx, w, s, s.ArchivedSeq+1, uptoSeq)
	if err != nil {
		return Record{}, err
	}
	if st.LastSeq != uptoSeq {
		return Record{}, fmt.Errorf("%w: exported up to %d, want %d", ErrInvalidRange, st.LastSeq, uptoSeq)
	}
	if cfg.keys != nil {
		if err := l.writeTrailer(w, key, st, s.Seq); err != nil {
			return Record{}, err
		}
	}
	if f, ok := w.(interface{ Sync() error }); ok {
		if err := f.Sync(); err != nil {
			return Record{}, fmt.Errorf("eventlog: archive: sync: %w", err)
		}
	}
	return l.ArchiveDigest(ctx, uptoSeq, st.SHA256, opts...)
}

func checkArchiveRange(s State, uptoSeq uint64) error {
	switch {
	case uptoSeq == 0:
		return fmt.Errorf("%w: archive up to seq 0", ErrInvalidRange)
	case uptoSeq <= s.ArchivedSeq:
		return fmt.Errorf("%w: records up to %d are already archived", ErrInvalidRange, s.ArchivedSeq)
	case uptoSeq > s.Seq:
		return fmt.Errorf("%w: seq %d is past the head (%d)", ErrInvalidRange, uptoSeq, s.Seq)
	}
	return nil
}

// ArchiveDigest deletes the records up to uptoSeq still in the log and
// appends an archive.anchor record, if and only if digest is the hex
// SHA-256 of their export (what Export writes for them): so the caller
// has proven it holds exactly what is deleted. It fails with
// ErrArchiveMismatch otherwise.
func (l *Log) ArchiveDigest(ctx context.Context, uptoSeq uint64, digest string, opts ...ArchiveOption) (Record, error) {
	var cfg archiveConfig
	for _, o := range opts {
		o(&cfg)
	}
	if err := validText("actor", cfg.actor, maxFieldBytes); err != nil {
		return Record{}, err
	}
	s, err := l.State(ctx)
	if err != nil {
		return Record{}, err
	}
	if err := checkArchiveRange(s, uptoSeq); err != nil {
		return Record{}, err
	}
	from := s.ArchivedSeq + 1
	st, err := l.export(ctx, io.Discard, s, from, uptoSeq)
	if err != nil {
		return Record{}, err
	}
	if st.SHA256 != digest {
		return Record{}, fmt.Errorf("%w: records %d..%d hash to %s, not %s", ErrArchiveMismatch, from, uptoSeq, st.SHA256, digest)
	}
	last, err := l.Range(ctx, uptoSeq, 1)
	if err != nil {
		return Record{}, err
	}
	if len(last) != 1 || last[0].Seq != uptoSeq {
		return Record{}, fmt.Errorf("%w: record %d is missing", ErrInvalidRange, uptoSeq)
	}
	anchorVal, _ := json.Marshal(headValue{V: SchemaVersion, Seq: uptoSeq, Hash: last[0].Hash})
	var anchorCmp clientv3.Cmp
	if s.anchorRev == 0 {
		anchorCmp = clientv3.Compare(clientv3.CreateRevision(l.anchorKey), "=", 0)
	} else {
		anchorCmp = clientv3.Compare(clientv3.ModRevision(l.anchorKey), "=", s.anchorRev)
	}
	recs, err := l.commit(ctx, func(cur State, _ time.Time) (plan, error) {
		if cur.anchorRev != s.anchorRev {
			return plan{}, fmt.Errorf("%w: the log was archived concurrently (now up to %d)", ErrInvalidRange, cur.ArchivedSeq)
		}
		return plan{
			recs: []Record{{
				Kind:    KindArchiveAnchor,
				Subject: "",
				Actor:   cfg.actor,
				Details: map[string]string{
					DetailArchivedFrom:   strconv.FormatUint(from, 10),
					DetailArchivedSeq:    strconv.FormatUint(uptoSeq, 10),
					DetailArchivedHash:   last[0].Hash,
					DetailArchivedCount:  strconv.FormatUint(uptoSeq-from+1, 10),
					DetailArchivedSHA256: digest,
				},
			}},
			cmps: []clientv3.Cmp{anchorCmp},
			ops: []clientv3.Op{
				clientv3.OpDelete(l.recKey(from), clientv3.WithRange(l.recKey(uptoSeq+1))),
				clientv3.OpPut(l.anchorKey, string(anchorVal)),
			},
		}, nil
	})
	if err != nil {
		return Record{}, err
	}
	return recs[0], nil
}

// ExportDigest returns the hex SHA-256 of an export's bytes, as
// ArchiveDigest expects it.
func ExportDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
