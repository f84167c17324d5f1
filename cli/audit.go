package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	auditv1 "github.com/signet-id/signet/proto/signet/audit/v1"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// auditCommand returns `signet audit`: tail, export, verify and archive the
// rotation event log.
func auditCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Read, export, verify and archive the rotation event log",
		Long: `The rotation event log records every CA transition, SVID and agent event,
JWT key and Vault lease event, hash-chained and signed at intervals by the
server (see docs/audit-log.md).

  signet audit tail --follow --kind 'ca.*'         # watch CA transitions
  signet audit export --out events.jsonl           # the whole log as JSON lines
  signet audit verify events.jsonl --bundle bundle.pem   # offline check
  signet audit archive --upto 100000 --out archive-1.jsonl  # move old records out`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	c.AddCommand(newAuditTailCommand(), newAuditExportCommand(), newAuditVerifyCommand(), newAuditArchiveCommand())
	c.SetFlagErrorFunc(spireFlagError)
	return c
}

func auditClient(c *adminClient) auditv1.AuditClient { return auditv1.NewAuditClient(c.conn) }

// parseSince parses --since: an RFC 3339 time, or a duration meaning that
// long before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usageErrorf("--since %q: give an RFC 3339 time (2026-03-01T12:00:00Z) or a duration before now (90m)", s)
}

func newAuditTailCommand() *cobra.Command {
	var (
		af      adminFlags
		follow  bool
		kinds   []string
		since   string
		fromSeq uint64
		limit   uint32
	)
	c := &cobra.Command{
		Use:   "tail",
		Short: "Print the last records of the event log, and follow new ones",
		Long: `Tail prints the last --limit records (20 by default), or the records from
--from-seq on, optionally only some kinds (--kind svid.issued, --kind 'ca.*')
and only those since a time (--since 2026-03-01T00:00:00Z or --since 1h).
With --follow it keeps printing new records until interrupted.
--output json prints each record's exact JSON line.`,
		Args: noArgs,
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			req := &auditv1.TailRequest{FromSeq: fromSeq, Kinds: kinds, Follow: follow, Limit: limit}
			if err := (eventlog.Filter{Kinds: kinds}).Validate(); err != nil {
				return usageErrorf("--kind: %v", strings.TrimPrefix(err.Error(), "eventlog: "))
			}
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return err
				}
				req.Since = timestamppb.New(t)
			}
			stream, err := auditClient(c).Tail(ctx, req)
			if err != nil {
				return c.rpcErr("tailing the event log", err)
			}
			out := cmd.OutOrStdout()
			for {
				r, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					if follow && ctx.Err() != nil {
						return nil // interrupted
					}
					return c.rpcErr("tailing the event log", err)
				}
				if err := printAuditRecord(out, r, af.output.json()); err != nil {
					return err
				}
			}
		}),
	}
	af.register(c.Flags(), true)
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing records as they are appended")
	c.Flags().StringArrayVar(&kinds, "kind", nil, "only records of this kind or family (svid.issued, ca.*); repeatable")
	c.Flags().StringVar(&since, "since", "", "only records at or after this time (RFC 3339, or a duration before now such as 1h)")
	c.Flags().Uint64Var(&fromSeq, "from-seq", 0, "start at this seq instead of the last records")
	c.Flags().Uint32VarP(&limit, "limit", "n", 0, "how many of the last records to print (default 20); with --from-seq, the most to print")
	return c
}

// printAuditRecord prints one record: its JSON line, or a text line
// "seq time kind subject key=value...".
func printAuditRecord(w io.Writer, r *auditv1.Record, asJSON bool) error {
	if asJSON {
		_, err := fmt.Fprintf(w, "%s\n", r.Json)
		return err
	}
	rec, err := eventlog.ParseRecord(r.Json)
	if err != nil {
		return fmt.Errorf("record %d from the server: %w", r.Seq, err)
	}
	_, err = fmt.Fprintln(w, formatAuditRecord(rec))
	return err
}

func formatAuditRecord(r eventlog.Record) string {
	var b strings.Builder
	subject := r.Subject
	if subject == "" {
		subject = "-"
	}
	fmt.Fprintf(&b, "%d  %s  %-22s  %s", r.Seq, r.Time.Format(time.RFC3339Nano), r.Kind, subject)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "  %s=%s", k, quoteIfNeeded(v))
		}
	}
	kv("actor", r.Actor)
	kv("serial", r.Serial)
	kv("key_id", r.KeyID)
	keys := make([]string, 0, len(r.Details))
	for k := range r.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kv(k, r.Details[k])
	}
	if cp := r.Checkpoint; cp != nil {
		fmt.Fprintf(&b, "  tree_size=%d  head_hash=%s  sig_alg=%s", cp.TreeSize, cp.HeadHash, cp.SigAlg)
	}
	return b.String()
}

func quoteIfNeeded(s string) string {
	if strings.ContainsAny(s, " \t\n\"=") || s == "" {
		return fmt.Sprintf("%q", s)
	}
	return s
}

func newAuditExportCommand() *cobra.Command {
	var (
		af             adminFlags
		out            string
		fromSeq, toSeq uint64
	)
	c := &cobra.Command{
		Use:   "export",
		Short: "Export the event log as JSON lines",
		Long: `Export writes the records still held by the server (or --from-seq..--to-seq)
as JSON lines, to --out FILE (written atomically) or to stdout. The server
ends the export with a trailer line it signs at export time over the last
record, so that a cut-off export fails verification (docs/audit-log.md).
Check an export offline with ` + "`signet audit verify FILE --bundle BUNDLE`.",
		Args: noArgs,
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			if toSeq != 0 && fromSeq > toSeq {
				return usageErrorf("--from-seq %d is after --to-seq %d", fromSeq, toSeq)
			}
			req := &auditv1.ExportRequest{FromSeq: fromSeq, ToSeq: toSeq}
			if out == "" || out == "-" {
				st, err := auditExport(ctx, c, req, cmd.OutOrStdout())
				if err != nil {
					return err
				}
				st.warnUnsigned(cmd.ErrOrStderr())
				if st.records == 0 {
					fmt.Fprintln(cmd.ErrOrStderr(), "The event log has no records in that range.")
				}
				return nil
			}
			st, err := auditExportFile(ctx, c, req, out, false)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Exported %s to %s (sha256 %s).\n", st.describe(), out, st.sha256)
			st.warnUnsigned(cmd.ErrOrStderr())
			return nil
		}),
	}
	af.register(c.Flags(), false)
	c.Flags().StringVar(&out, "out", "", "write to this file instead of stdout")
	c.Flags().Uint64Var(&fromSeq, "from-seq", 0, "first seq to export (default: the first record held)")
	c.Flags().Uint64Var(&toSeq, "to-seq", 0, "last seq to export (default: the head)")
	return c
}

// exportStats describes what an export wrote.
type exportStats struct {
	records           int
	firstSeq, lastSeq uint64
	sha256            string // of the file's bytes
	recordsSHA256     string // of the record lines only, without the trailer (what Archive expects)
	trailer           bool   // the export ends with a signed export trailer
}

// warnUnsigned warns on w when a non-empty export has no trailer.
func (s exportStats) warnUnsigned(w io.Writer) {
	if s.records > 0 && !s.trailer {
		fmt.Fprintln(w, "WARNING: the server did not end the export with a signed export trailer (an older server?): "+
			"`signet audit verify` accepts it only with --allow-unsigned-tail")
	}
}

func (s exportStats) describe() string {
	if s.records == 0 {
		return "0 records"
	}
	return fmt.Sprintf("%s (seq %d..%d)", pluralize(s.records, "record", "records"), s.firstSeq, s.lastSeq)
}

// auditExport streams an export to w and describes it.
func auditExport(ctx context.Context, c *adminClient, req *auditv1.ExportRequest, w io.Writer) (exportStats, error) {
	stream, err := auditClient(c).Export(ctx, req)
	if err != nil {
		return exportStats{}, c.rpcErr("exporting the event log", err)
	}
	h, rh := sha256.New(), sha256.New()
	var st exportStats
	var lastLine []byte
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return st, c.rpcErr("exporting the event log", err)
		}
		data := chunk.GetData()
		if _, err := w.Write(data); err != nil {
			return st, fmt.Errorf("writing the export: %w", err)
		}
		h.Write(data)
		for line := range bytes.Lines(data) {
			st.trailer = eventlog.IsTrailer(line)
			if st.trailer {
				continue
			}
			rh.Write(line)
			if st.records == 0 {
				st.firstSeq = lineSeq(line)
			}
			st.records++
			lastLine = line
		}
	}
	if lastLine != nil {
		st.lastSeq = lineSeq(lastLine)
	}
	st.sha256 = hex.EncodeToString(h.Sum(nil))
	st.recordsSHA256 = hex.EncodeToString(rh.Sum(nil))
	return st, nil
}

func lineSeq(line []byte) uint64 {
	var s struct {
		Seq uint64 `json:"seq"`
	}
	_ = json.Unmarshal(line, &s)
	return s.Seq
}

// auditExportFile exports to path through a synced temporary file in the
// same directory, renamed into place at the end. With exclusive, an
// existing path is an error (checked first, and again at the end).
func auditExportFile(ctx context.Context, c *adminClient, req *auditv1.ExportRequest, path string, exclusive bool) (exportStats, error) {
	if exclusive {
		if _, err := os.Lstat(path); err == nil {
			return exportStats{}, usageErrorf("%s already exists: choose a new file for the archive", path)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return exportStats{}, fmt.Errorf("create %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	bw := bufio.NewWriterSize(f, 256<<10)
	st, err := auditExport(ctx, c, req, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return st, err
	}
	if exclusive {
		// Link fails if path appeared meanwhile; never overwrite an archive.
		if err := os.Link(tmp, path); err != nil {
			return st, fmt.Errorf("write %s: %w", path, err)
		}
	} else if err := os.Rename(tmp, path); err != nil {
		return st, fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return st, nil
}

func newAuditArchiveCommand() *cobra.Command {
	var (
		af   adminFlags
		upto uint64
		out  string
	)
	c := &cobra.Command{
		Use:   "archive",
		Short: "Move old records out of the server into an archive file",
		Long: `Archive exports the records up to --upto into --out (a new file, synced to
disk), then asks the server to delete exactly those records, proving it holds
them by their SHA-256. The server appends an archive.anchor record that
commits to the archive, so exports of the remaining records still verify.
Keep the archive file: ` + "`signet audit verify ARCHIVE REST --bundle B`" + ` checks both
as one chain.`,
		Args: noArgs,
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			if upto == 0 {
				return usageErrorf("--upto is required: the last seq to archive")
			}
			if out == "" {
				return usageErrorf("--out is required: the file to write the archived records to")
			}
			st, err := auditExportFile(ctx, c, &auditv1.ExportRequest{ToSeq: upto}, out, true)
			if err != nil {
				return err
			}
			if st.records == 0 || st.lastSeq != upto {
				_ = os.Remove(out)
				if st.records == 0 {
					return fmt.Errorf("nothing to archive: no records up to seq %d are held (already archived?)", upto)
				}
				return fmt.Errorf("cannot archive up to seq %d: the log ends at seq %d", upto, st.lastSeq)
			}
			resp, err := auditClient(c).Archive(ctx, &auditv1.ArchiveRequest{UptoSeq: upto, Sha256: st.recordsSHA256})
			if err != nil {
				return fmt.Errorf("%w (the export in %s is complete; nothing was deleted)", c.rpcErr("archiving", err), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Archived %s to %s (sha256 %s, of the records %s); the server recorded archive.anchor seq %d.\n",
				st.describe(), out, st.sha256, st.recordsSHA256, resp.GetAnchor().GetSeq())
			return nil
		}),
	}
	af.register(c.Flags(), false)
	c.Flags().Uint64Var(&upto, "upto", 0, "archive every record up to and including this seq (required)")
	c.Flags().StringVar(&out, "out", "", "new file to write the archived records to (required)")
	return c
}
