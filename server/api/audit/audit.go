// Package audit implements Signet's Audit API (signet.audit.v1) over the
// rotation event log: tail and follow records, export them as JSON lines,
// and archive old ones. The server's interceptor admits only admins.
package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"

	auditv1 "github.com/signet-id/signet/proto/signet/audit/v1"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/server/caller"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Log is the event log the service serves.
type Log interface {
	State(ctx context.Context) (eventlog.State, error)
	Range(ctx context.Context, fromSeq uint64, limit int) ([]eventlog.Record, error)
	Last(ctx context.Context, n int, f eventlog.Filter) ([]eventlog.Record, error)
	Follow(ctx context.Context, fromSeq uint64) (<-chan eventlog.Record, error)
	Export(ctx context.Context, w io.Writer, fromSeq, toSeq uint64) (eventlog.ExportStats, error)
	ExportSigned(ctx context.Context, w io.Writer, fromSeq, toSeq uint64, keys eventlog.KeySource) (eventlog.ExportStats, error)
	ArchiveDigest(ctx context.Context, uptoSeq uint64, digest string, opts ...eventlog.ArchiveOption) (eventlog.Record, error)
}

var _ Log = (*eventlog.Log)(nil)

// Limits.
const (
	// DefaultTail is how many records Tail starts with when from_seq is 0
	// and limit is not set.
	DefaultTail = 20
	// MaxKinds bounds the kind filters of one Tail request.
	MaxKinds = 64
	// chunkSize is the size at which Export sends a chunk.
	chunkSize = 256 << 10
	pageSize  = 500
)

// Config configures the service.
type Config struct {
	Log    Log
	Logger *slog.Logger
	// Signer signs the trailer that ends every export (the server's own
	// X.509-SVID, spiffe://<td>/spire/server). Without one, exports end
	// without a trailer and verify only with --allow-unsigned-tail.
	Signer eventlog.KeySource
}

// Service implements auditv1.AuditServer.
type Service struct {
	auditv1.UnsafeAuditServer
	cfg Config
}

var _ auditv1.AuditServer = (*Service)(nil)

// New returns the service.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg}
}

func toProto(r eventlog.Record) *auditv1.Record {
	return &auditv1.Record{Json: r.Line(), Seq: r.Seq, Kind: string(r.Kind)}
}

// logError maps an event log error to a status.
func (s *Service) logError(what string, err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, eventlog.ErrInvalidRange), errors.Is(err, eventlog.ErrArchiveMismatch):
		return status.Errorf(codes.FailedPrecondition, "%s: %v", what, err)
	case errors.Is(err, eventlog.ErrConflict):
		return status.Errorf(codes.Aborted, "%s: %v", what, err)
	}
	s.cfg.Logger.Error("audit: "+what, "error", err)
	return status.Errorf(codes.Internal, "%s: %v", what, err)
}

// Tail streams records (see auditv1.TailRequest).
func (s *Service) Tail(req *auditv1.TailRequest, stream auditv1.Audit_TailServer) error {
	ctx := stream.Context()
	if len(req.Kinds) > MaxKinds {
		return status.Errorf(codes.InvalidArgument, "too many kinds: %d, at most %d", len(req.Kinds), MaxKinds)
	}
	f := eventlog.Filter{Kinds: req.Kinds}
	if err := f.Validate(); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if req.Since != nil {
		if err := req.Since.CheckValid(); err != nil {
			return status.Errorf(codes.InvalidArgument, "invalid since: %v", err)
		}
		f.Since = req.Since.AsTime()
	}
	send := func(r eventlog.Record) error {
		if !f.Match(r) {
			return nil
		}
		return stream.Send(toProto(r))
	}

	next := req.FromSeq
	if next == 0 {
		st, err := s.cfg.Log.State(ctx)
		if err != nil {
			return s.logError("failed to read the event log", err)
		}
		n := int(req.Limit)
		if n == 0 {
			n = DefaultTail
		}
		recs, err := s.cfg.Log.Last(ctx, n, f)
		if err != nil {
			return s.logError("failed to read the event log", err)
		}
		next = st.Seq + 1
		for _, r := range recs {
			if err := send(r); err != nil {
				return err
			}
			next = max(next, r.Seq+1)
		}
	} else if !req.Follow {
		return s.tailRange(ctx, req, f, stream)
	}
	if !req.Follow {
		return nil
	}
	ch, err := s.cfg.Log.Follow(ctx, next)
	if err != nil {
		return s.logError("failed to follow the event log", err)
	}
	for r := range ch {
		if err := send(r); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unavailable, "the event log stream ended; retry")
}

// tailRange streams the records from req.FromSeq up to the head as it was
// when the call started (at most req.Limit matching records, if set).
func (s *Service) tailRange(ctx context.Context, req *auditv1.TailRequest, f eventlog.Filter, stream auditv1.Audit_TailServer) error {
	st, err := s.cfg.Log.State(ctx)
	if err != nil {
		return s.logError("failed to read the event log", err)
	}
	sent := 0
	for next := req.FromSeq; next <= st.Seq; {
		recs, err := s.cfg.Log.Range(ctx, next, pageSize)
		if err != nil {
			return s.logError("failed to read the event log", err)
		}
		if len(recs) == 0 {
			return nil
		}
		for _, r := range recs {
			if r.Seq > st.Seq {
				return nil
			}
			next = r.Seq + 1
			if !f.Match(r) {
				continue
			}
			if err := stream.Send(toProto(r)); err != nil {
				return err
			}
			sent++
			if req.Limit > 0 && sent >= int(req.Limit) {
				return nil
			}
		}
	}
	return nil
}

// Export streams the records as JSON lines, ending with an export
// trailer signed now by cfg.Signer over the last record sent (see
// eventlog.ExportSigned). A failure to sign fails the call: an export
// that would not verify is not sent as if complete. Without a key that
// can sign (eventlog.ErrCannotSign: pure ML-DSA, no SVID yet) the export
// is sent without a trailer and a warning is logged.
func (s *Service) Export(req *auditv1.ExportRequest, stream auditv1.Audit_ExportServer) error {
	if req.ToSeq != 0 && req.FromSeq > req.ToSeq {
		return status.Errorf(codes.InvalidArgument, "from_seq %d is after to_seq %d", req.FromSeq, req.ToSeq)
	}
	w := &chunkWriter{send: func(b []byte) error { return stream.Send(&auditv1.ExportChunk{Data: b}) }}
	export := s.cfg.Log.Export
	if s.cfg.Signer != nil {
		export = func(ctx context.Context, w io.Writer, from, to uint64) (eventlog.ExportStats, error) {
			st, err := s.cfg.Log.ExportSigned(ctx, w, from, to, s.cfg.Signer)
			if errors.Is(err, eventlog.ErrCannotSign) {
				// Nothing was sent yet. An unsigned export still verifies
				// only with --allow-unsigned-tail, and the CLI warns.
				s.cfg.Logger.Warn("audit: exporting without a signed trailer", "error", err)
				return s.cfg.Log.Export(ctx, w, from, to)
			}
			return st, err
		}
	}
	if _, err := export(stream.Context(), w, req.FromSeq, req.ToSeq); err != nil {
		if w.err != nil {
			return w.err
		}
		return s.logError("failed to export the event log", err)
	}
	return w.flush()
}

// chunkWriter sends what is written in chunks of about chunkSize bytes;
// Export writes one whole line per Write, so chunks end at line ends.
type chunkWriter struct {
	buf  []byte
	send func([]byte) error
	err  error
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	if len(w.buf) >= chunkSize {
		if err := w.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 || w.err != nil {
		return w.err
	}
	w.err = w.send(w.buf)
	w.buf = nil
	return w.err
}

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Archive deletes records the caller has exported.
func (s *Service) Archive(ctx context.Context, req *auditv1.ArchiveRequest) (*auditv1.ArchiveResponse, error) {
	if req.UptoSeq == 0 {
		return nil, status.Error(codes.InvalidArgument, "upto_seq is required")
	}
	if !hexSHA256.MatchString(req.Sha256) {
		return nil, status.Error(codes.InvalidArgument, "sha256 must be the lower-case hex SHA-256 of the export of the records to archive")
	}
	actor := "admin"
	if c, ok := caller.FromContext(ctx); ok && !c.ID.IsZero() {
		actor = c.ID.String()
	}
	anchor, err := s.cfg.Log.ArchiveDigest(ctx, req.UptoSeq, req.Sha256, eventlog.ArchiveActor(actor))
	if err != nil {
		return nil, s.logError(fmt.Sprintf("failed to archive records up to %d", req.UptoSeq), err)
	}
	n, _ := strconv.ParseUint(anchor.Details[eventlog.DetailArchivedCount], 10, 64)
	s.cfg.Logger.Info("audit: archived event log records", "upto_seq", req.UptoSeq, "records", n, "actor", actor)
	return &auditv1.ArchiveResponse{Anchor: toProto(anchor), ArchivedRecords: n}, nil
}
