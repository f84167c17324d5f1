package cli

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func newAuditVerifyCommand() *cobra.Command {
	var (
		bundles   []string
		partial   bool
		startHash string
		signers   []string
		allowTail bool
		expect    string
		maxAge    time.Duration
		output    outputFormat
	)
	c := &cobra.Command{
		Use:   "verify FILE [FILE...] --bundle BUNDLE",
		Short: "Verify an event log export offline",
		Long: `Verify checks JSON-lines exports offline, with only the files and the trust
bundle: the schema version, that seqs continue without gaps, every record
hash and prev_hash link, and every checkpoint and export trailer signature:
by the server (spiffe://<td>/spire/server of the bundle's trust domain, or
the IDs given with --signer, which replace that default), with an
end-entity certificate valid at the signature's time and chaining to the
bundle. Several files are checked as one chain, in order (an archive, then
the export that follows it).

An export must end with the trailer ` + "`signet audit export`" + ` adds (signed when
exporting): records after the last signature fail, naming the first one,
as a possibly truncated export, unless --allow-unsigned-tail.
--expect-head SEQ:HASH pins a head seen elsewhere (an earlier export's head
hash, a witness); --max-age 24h refuses an export signed longer ago.

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
			opts := eventlog.VerifyOptions{Partial: partial, StartPrevHash: startHash, Signers: signers, AllowUnsignedTail: allowTail, MaxAge: maxAge}
			if expect != "" {
				h, err := eventlog.ParseHead(expect)
				if err != nil {
					return usageErrorf("--expect-head: %v", strings.TrimPrefix(err.Error(), "eventlog: "))
				}
				opts.ExpectHead = &h
			}
			if maxAge < 0 {
				return usageErrorf("--max-age %s: give a positive duration (24h)", maxAge)
			}
			for _, id := range signers {
				if u, err := url.Parse(id); err != nil || u.Scheme != "spiffe" || u.Host == "" || u.Path == "" {
					return usageErrorf("--signer %q: give a SPIFFE ID such as spiffe://example.org/spire/server", id)
				}
			}
			in, err := openAuditFiles(args)
			if err != nil {
				return err
			}
			defer in.Close()
			rep, err := eventlog.Verify(in, roots, opts)
			if errors.Is(err, eventlog.ErrNoDefaultSigner) {
				return usageErrorf("%s: give --signer", strings.TrimPrefix(err.Error(), "eventlog: "))
			}
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
			if !rep.ExportSigned && rep.Records > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: the export does not end with an export trailer (accepted because of --allow-unsigned-tail): records after seq %d may be missing; unsigned records after the last signature: %d\n",
					rep.LastSeq, rep.Unsigned)
			}
			return nil
		},
	}
	c.Flags().StringArrayVar(&bundles, "bundle", nil, "trust bundle: PEM certificates or SPIFFE bundle JSON (required; repeatable)")
	c.Flags().BoolVar(&partial, "partial", false, "accept an export that starts after seq 1 without proof of where it starts")
	c.Flags().StringVar(&startHash, "start-hash", "", "the prev_hash the first record must have (the head hash of the archive it continues)")
	c.Flags().StringArrayVar(&signers, "signer", nil, "SPIFFE ID allowed to sign checkpoints, replacing the default spiffe://<td>/spire/server of the bundle's trust domain; repeatable")
	c.Flags().BoolVar(&allowTail, "allow-unsigned-tail", false, "accept an export that does not end with an export trailer (records after the last signature are reported as unsigned)")
	c.Flags().StringVar(&expect, "expect-head", "", "SEQ:HASH the export must contain: a head seen elsewhere (fails if the export ends before SEQ or differs)")
	c.Flags().DurationVar(&maxAge, "max-age", 0, "refuse an export whose last signature is older than this (24h)")
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
		"export_signed":       rep.ExportSigned,
		"export_time":         jsonTime(rep.ExportTime),
		"export_signer":       rep.ExportSigner,
		"log_size":            rep.LogSize,
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
	switch {
	case rep.Checkpoints == 0 && rep.Trailers == 0:
		fmt.Fprintln(w, "  checkpoints: none -- WARNING: no record is covered by a signature; this proves only that the chain is consistent")
	case rep.Checkpoints == 0:
		fmt.Fprintln(w, "  checkpoints: none in the log")
	default:
		fmt.Fprintf(w, "  checkpoints: %d, the last at seq %d signing seq ..%d, by %s\n", rep.Checkpoints, rep.LastCheckpointSeq, rep.LastCheckpointSeq-1, strings.Join(rep.Signers, ", "))
	}
	if rep.ExportSigned {
		fmt.Fprintf(w, "  exported:    %s by %s, signing seq ..%d\n", rep.ExportTime.Format(time.RFC3339), rep.ExportSigner, rep.SignedThrough)
		if rep.LogSize > rep.LastSeq {
			fmt.Fprintf(w, "  range:       NOTE: the log held %d records when this was exported; this export ends at seq %d\n", rep.LogSize, rep.LastSeq)
		}
	}
	if rep.Unsigned > 0 {
		fmt.Fprintf(w, "  unsigned:    %s after the last signature (seq %d..%d) are linked by hashes but not signed\n",
			pluralize(rep.Unsigned, "record", "records"), rep.LastSeq-uint64(rep.Unsigned)+1, rep.LastSeq)
	}
	kinds := make([]string, 0, len(rep.Kinds))
	for k, n := range rep.Kinds {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	slices.Sort(kinds)
	fmt.Fprintf(w, "  kinds:       %s\n", strings.Join(kinds, " "))
}

func jsonTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
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

// spiffeBundleRoots reads the X.509 authorities of a SPIFFE bundle,
// pure ML-DSA ones (in the bundle's ML-DSA member) included; checkpoints
// must chain to one of them. The trust domain is not checked: a SPIFFE
// bundle document does not name it.
func spiffeBundleRoots(path string, data []byte) ([]*x509.Certificate, error) {
	b, err := bundlecodec.Parse(spiffeid.TrustDomain{}, data)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: not a SPIFFE bundle: %w", path, err)
	}
	certs := b.X509Authorities()
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
	switch c.state {
	case 2:
		return 0, io.EOF
	case 1:
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
