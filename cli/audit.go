package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
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
as JSON lines, to --out FILE (written atomically) or to stdout. Check an
export offline with ` + "`signet audit verify FILE --bundle BUNDLE`.",
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
	sha256            string
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
	h := sha256.New()
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
			resp, err := auditClient(c).Archive(ctx, &auditv1.ArchiveRequest{UptoSeq: upto, Sha256: st.sha256})
			if err != nil {
				return fmt.Errorf("%w (the export in %s is complete; nothing was deleted)", c.rpcErr("archiving", err), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Archived %s to %s (sha256 %s); the server recorded archive.anchor seq %d.\n",
				st.describe(), out, st.sha256, resp.GetAnchor().GetSeq())
			return nil
		}),
	}
	af.register(c.Flags(), false)
	c.Flags().Uint64Var(&upto, "upto", 0, "archive every record up to and including this seq (required)")
	c.Flags().StringVar(&out, "out", "", "new file to write the archived records to (required)")
	return c
}

func newAuditVerifyCommand() *cobra.Command {
	var (
		bundles   []string
		partial   bool
		startHash string
		signers   []string
		output    outputFormat
	)
	c := &cobra.Command{
		Use:   "verify FILE [FILE...] --bundle BUNDLE",
		Short: "Verify an event log export offline",
		Long: `Verify checks JSON-lines exports offline, with only the files and the trust
bundle: the schema version, that seqs continue without gaps, every record
hash and prev_hash link, and every checkpoint signature with its
certificate chain to the bundle at the checkpoint's time. Several files are
checked as one chain, in order (an archive, then the export that follows it).

--bundle is PEM certificates or a SPIFFE bundle (JSON); repeat it to add the
bundles of earlier CA generations.

It prints OK and counts, or the first bad record (seq, line, reason) and
exits 1.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("give the export file to verify (see `%s --help`)", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(bundles) == 0 {
				return usageErrorf("--bundle is required: the trust bundle the checkpoints chain to (PEM or SPIFFE bundle JSON; `signet bundle show` prints it)")
			}
			var roots []*x509.Certificate
			for _, b := range bundles {
				certs, err := loadAuditBundle(b)
				if err != nil {
					return err
				}
				roots = append(roots, certs...)
			}
			in, err := openAuditFiles(args)
			if err != nil {
				return err
			}
			defer in.Close()
			rep, err := eventlog.Verify(in, roots, eventlog.VerifyOptions{Partial: partial, StartPrevHash: startHash, Signers: signers})
			out := cmd.OutOrStdout()
			var ve *eventlog.VerifyError
			if errors.As(err, &ve) {
				file, line := in.locate(ve.Line)
				if output.json() {
					_ = writeJSON(out, map[string]any{"ok": false, "seq": ve.Seq, "file": file, "line": line, "reason": ve.Reason})
				} else {
					fmt.Fprintf(out, "FAILED: record seq %d (%s line %d): %s\n", ve.Seq, file, line, ve.Reason)
				}
				return errors.New("the event log export failed verification")
			}
			if err != nil {
				return err
			}
			if output.json() {
				return writeJSON(out, auditReportJSON(rep))
			}
			printAuditReport(out, rep)
			return nil
		},
	}
	c.Flags().StringArrayVar(&bundles, "bundle", nil, "trust bundle: PEM certificates or SPIFFE bundle JSON (required; repeatable)")
	c.Flags().BoolVar(&partial, "partial", false, "accept an export that starts after seq 1 without proof of where it starts")
	c.Flags().StringVar(&startHash, "start-hash", "", "the prev_hash the first record must have (the head hash of the archive it continues)")
	c.Flags().StringArrayVar(&signers, "signer", nil, "SPIFFE ID allowed to sign checkpoints (default: any chaining to the bundle); repeatable")
	addOutputFlag(c.Flags(), &output)
	return c
}

func auditReportJSON(rep eventlog.Report) map[string]any {
	return map[string]any{
		"ok":                  true,
		"records":             rep.Records,
		"first_seq":           rep.FirstSeq,
		"last_seq":            rep.LastSeq,
		"start_prev_hash":     rep.StartPrevHash,
		"start_confirmed":     rep.StartConfirmed,
		"head_hash":           rep.HeadHash,
		"checkpoints":         rep.Checkpoints,
		"last_checkpoint_seq": rep.LastCheckpointSeq,
		"signed_through":      rep.SignedThrough,
		"unsigned":            rep.Unsigned,
		"signers":             rep.Signers,
		"kinds":               rep.Kinds,
	}
}

func printAuditReport(w io.Writer, rep eventlog.Report) {
	if rep.Records == 0 {
		fmt.Fprintln(w, "OK: the export is empty (0 records).")
		return
	}
	start := "from the first record (seq 1)"
	switch {
	case rep.FirstSeq == 1:
	case rep.StartConfirmed:
		start = fmt.Sprintf("continuing after archived seq %d (start confirmed)", rep.FirstSeq-1)
	default:
		start = fmt.Sprintf("continuing after seq %d (partial: start NOT confirmed)", rep.FirstSeq-1)
	}
	fmt.Fprintf(w, "OK: %s, seq %d..%d, %s\n", pluralize(rep.Records, "record", "records"), rep.FirstSeq, rep.LastSeq, start)
	fmt.Fprintf(w, "  time:        %s .. %s\n", rep.FirstTime.Format(time.RFC3339), rep.LastTime.Format(time.RFC3339))
	fmt.Fprintf(w, "  head hash:   %s\n", rep.HeadHash)
	if rep.Checkpoints == 0 {
		fmt.Fprintln(w, "  checkpoints: none -- WARNING: no record is covered by a signature; this proves only that the chain is consistent")
	} else {
		fmt.Fprintf(w, "  checkpoints: %d, the last at seq %d signing seq ..%d, by %s\n", rep.Checkpoints, rep.LastCheckpointSeq, rep.SignedThrough, strings.Join(rep.Signers, ", "))
		if rep.Unsigned > 0 {
			fmt.Fprintf(w, "  unsigned:    %s after the last checkpoint (seq %d..%d) are linked by hashes but not yet signed\n",
				pluralize(rep.Unsigned, "record", "records"), rep.LastSeq-uint64(rep.Unsigned)+1, rep.LastSeq)
		}
	}
	kinds := make([]string, 0, len(rep.Kinds))
	for k, n := range rep.Kinds {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	slices.Sort(kinds)
	fmt.Fprintf(w, "  kinds:       %s\n", strings.Join(kinds, " "))
}

// loadAuditBundle reads the X.509 authorities of a PEM or SPIFFE bundle.
func loadAuditBundle(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte("{")) {
		return spiffeBundleRoots(path, trimmed)
	}
	var certs []*x509.Certificate
	for rest := trimmed; len(rest) > 0; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: certificate %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("bundle %s: no certificates: expected PEM CERTIFICATE blocks or a SPIFFE bundle (JSON)", path)
	}
	return certs, nil
}

// spiffeBundleRoots reads the x509-svid keys of a SPIFFE bundle (a JWK
// set). Authorities whose certificates Go cannot parse (pure ML-DSA) are
// skipped; checkpoints must chain to a classical or hybrid authority.
func spiffeBundleRoots(path string, data []byte) ([]*x509.Certificate, error) {
	var doc struct {
		Keys []struct {
			Use string   `json:"use"`
			X5c []string `json:"x5c"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("bundle %s: not a SPIFFE bundle: %w", path, err)
	}
	var certs []*x509.Certificate
	for _, k := range doc.Keys {
		if k.Use != "x509-svid" || len(k.X5c) == 0 {
			continue
		}
		der, err := base64.StdEncoding.DecodeString(k.X5c[0])
		if err != nil {
			return nil, fmt.Errorf("bundle %s: x5c: %w", path, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			continue
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("bundle %s: no X.509 authorities (keys with use x509-svid)", path)
	}
	return certs, nil
}

// auditFiles reads several exports as one, each ending in a newline, and
// maps a line number of the whole back to a file and line.
type auditFiles struct {
	io.Reader
	names  []string
	files  []*os.File
	counts []*lineCounter
}

// lineCounter counts the lines read from r and ends a file whose last
// line has no newline with one, so that the next file starts a new line.
type lineCounter struct {
	r     io.Reader
	lines int
	last  byte // the last byte read; 0 before any
	state int  // 0: reading, 1: a newline to add, 2: done
}

func (c *lineCounter) Read(p []byte) (int, error) {
	switch {
	case c.state == 2:
		return 0, io.EOF
	case c.state == 1:
		if len(p) == 0 {
			return 0, nil
		}
		p[0] = '\n'
		c.lines++
		c.state = 2
		return 1, nil
	}
	n, err := c.r.Read(p)
	c.lines += bytes.Count(p[:n], []byte("\n"))
	if n > 0 {
		c.last = p[n-1]
	}
	if errors.Is(err, io.EOF) {
		c.state = 2
		if c.last != 0 && c.last != '\n' {
			c.state = 1
			return n, nil
		}
	}
	return n, err
}

func openAuditFiles(paths []string) (*auditFiles, error) {
	a := &auditFiles{}
	var readers []io.Reader
	for _, p := range paths {
		f := os.Stdin
		if p != "-" {
			var err error
			if f, err = os.Open(p); err != nil {
				a.Close()
				return nil, fmt.Errorf("open export: %w", err)
			}
			a.files = append(a.files, f)
		}
		lc := &lineCounter{r: f}
		a.names = append(a.names, p)
		a.counts = append(a.counts, lc)
		readers = append(readers, lc)
	}
	a.Reader = io.MultiReader(readers...)
	return a, nil
}

func (a *auditFiles) locate(line int) (string, int) {
	for i, c := range a.counts {
		if line <= c.lines || i == len(a.counts)-1 {
			return a.names[i], line
		}
		line -= c.lines
	}
	return "", line
}

func (a *auditFiles) Close() error {
	for _, f := range a.files {
		_ = f.Close()
	}
	return nil
}
