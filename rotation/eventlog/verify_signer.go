package eventlog

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/spireid"
)

// ErrNoDefaultSigner is returned when VerifyOptions.Signers is empty and the
// trust bundle does not name exactly one trust domain, so the default
// signer (spiffe://<td>/spire/server) cannot be chosen.
var ErrNoDefaultSigner = errors.New("eventlog: cannot choose the default checkpoint signer")

// MaxClockSkew is how far a checkpoint or trailer time may be ahead of the
// verifier's clock.
const MaxClockSkew = 5 * time.Minute

// ServerSigner returns the SPIFFE ID the server of trust domain td signs
// checkpoints with: spiffe://<td>/spire/server.
func ServerSigner(td string) string { return "spiffe://" + td + spireid.ServerPath }

// DefaultSigners returns the checkpoint signers Verify allows when
// VerifyOptions.Signers is empty: the server ID of the one trust domain
// the roots name in their SPIFFE URI SANs. It fails with
// ErrNoDefaultSigner when the roots name none (an upstream CA) or several.
func DefaultSigners(roots []*x509.Certificate) ([]string, error) {
	var tds []string
	for _, c := range roots {
		for _, u := range c.URIs {
			if u.Scheme == "spiffe" && u.Host != "" && !slices.Contains(tds, u.Host) {
				tds = append(tds, u.Host)
			}
		}
	}
	switch len(tds) {
	case 1:
		return []string{ServerSigner(tds[0])}, nil
	case 0:
		return nil, fmt.Errorf("%w: no certificate of the trust bundle has a spiffe:// URI naming its trust domain; name the signer (spiffe://<td>/spire/server)", ErrNoDefaultSigner)
	}
	return nil, fmt.Errorf("%w: the trust bundle names several trust domains (%s); name the signer (spiffe://<td>/spire/server)", ErrNoDefaultSigner, strings.Join(tds, ", "))
}

// checkSigner checks a signature over body by the leaf of chain: the leaf
// must be an X.509-SVID-shaped end-entity certificate (not a CA, no
// certificate or CRL signing, digitalSignature, exactly one URI SAN) whose
// SPIFFE ID is an allowed signer, valid at time at and chaining through
// the rest of chain to the trust bundle at that time. It returns the
// signer's SPIFFE ID.
func (v *verifier) checkSigner(chainDER [][]byte, sigAlg string, sig, body []byte, at time.Time) (string, error) {
	if len(chainDER) == 0 {
		return "", errors.New("no certificate chain")
	}
	certs := make([]*x509.Certificate, len(chainDER))
	for i, der := range chainDER {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return "", fmt.Errorf("certificate %d of the chain: %w", i, err)
		}
		certs[i] = c
	}
	leaf := certs[0]
	alg, ok := sigAlgByName[sigAlg]
	if !ok {
		return "", fmt.Errorf("unsupported signature algorithm %q", sigAlg)
	}
	if err := leaf.CheckSignature(alg, body, sig); err != nil {
		return "", fmt.Errorf("bad signature: %w", err)
	}
	if v.roots == nil {
		return "", errors.New("no trust bundle to verify the signer against")
	}
	name := fmt.Sprintf("signer certificate (serial %s)", leaf.SerialNumber.Text(16))
	switch {
	case leaf.IsCA || leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return "", fmt.Errorf("%s is a CA certificate: checkpoints must be signed by the server's X.509-SVID, an end-entity certificate", name)
	case leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return "", fmt.Errorf("%s lacks the digitalSignature key usage", name)
	case len(leaf.URIs) != 1 || leaf.URIs[0].Scheme != "spiffe":
		return "", fmt.Errorf("%s has %d URI SANs: a signer has exactly one SPIFFE ID", name, len(leaf.URIs))
	}
	signer := leaf.URIs[0].String()
	if !slices.Contains(v.allowed, signer) {
		return "", fmt.Errorf("signed by %s, which is not an allowed checkpoint signer (allowed: %s; the auditor names others with --signer)", signer, strings.Join(v.allowed, ", "))
	}
	if at.Before(leaf.NotBefore) || at.After(leaf.NotAfter) {
		return "", fmt.Errorf("%s of %s is not valid at %s (valid %s to %s): an expired or not yet valid key cannot sign", name, signer, formatTime(at), formatTime(leaf.NotBefore), formatTime(leaf.NotAfter))
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return "", fmt.Errorf("%s of %s does not chain to the trust bundle at %s: %w", name, signer, formatTime(at), err)
	}
	if now := v.now(); at.After(now.Add(MaxClockSkew)) {
		return "", fmt.Errorf("signed at %s, after the verifier's clock (%s): a signature cannot be dated in the future", formatTime(at), formatTime(now))
	}
	return signer, nil
}

// noteSigner records a signature that covers every record read so far.
func (v *verifier) noteSigner(signer string, at time.Time) {
	if !v.signers[signer] {
		v.signers[signer] = true
		v.rep.Signers = append(v.rep.Signers, signer)
	}
	v.rep.SignedThrough = v.last.Seq
	v.rep.Unsigned = 0
	v.lastSigned = at
}

// trailer checks an export trailer line: it must follow a record, commit
// to it and be signed by an allowed signer at its time.
func (v *verifier) trailer(line []byte, n int) error {
	fail := func(format string, args ...any) error {
		return &VerifyError{Seq: v.last.Seq, Line: n, Reason: "export trailer: " + fmt.Sprintf(format, args...)}
	}
	tr, err := ParseTrailer(line)
	if err != nil {
		return fail("%s", trimPrefix(err))
	}
	switch {
	case v.rep.Records == 0:
		return fail("before any record: a trailer ends an export")
	case tr.TreeSize != v.last.Seq:
		return fail("tree_size %d, but the record before it is seq %d", tr.TreeSize, v.last.Seq)
	case tr.HeadHash != v.last.Hash:
		return fail("head_hash %s is not the hash of record %d (%s)", tr.HeadHash, v.last.Seq, v.last.Hash)
	case tr.LogSize < tr.TreeSize:
		return fail("log_size %d is less than tree_size %d", tr.LogSize, tr.TreeSize)
	case tr.Time.Before(v.last.Time):
		return fail("time %s is before the time of the record it covers (%s)", formatTime(tr.Time), formatTime(v.last.Time))
	case strings.ContainsAny(tr.Subject, "\n\r"):
		return fail("subject contains a line break")
	}
	signer, err := v.checkSigner(tr.Chain, tr.SigAlg, tr.Signature, TrailerBody(tr.Subject, tr.TreeSize, tr.HeadHash, tr.LogSize, tr.Time), tr.Time)
	if err != nil {
		return fail("%s", err)
	}
	v.noteSigner(signer, tr.Time)
	v.rep.Trailers++
	v.rep.ExportTime, v.rep.ExportSigner, v.rep.LogSize = tr.Time, signer, tr.LogSize
	v.endsWithTrailer = true
	return nil
}

// finishTail applies the end-of-export rules: the export must end with a
// trailer (unless AllowUnsignedTail), reach the expected head, and be
// signed recently enough.
func (v *verifier) finishTail() error {
	if v.rep.Records == 0 {
		if v.opts.ExpectHead != nil {
			return &VerifyError{Seq: v.opts.ExpectHead.Seq, Line: 1, Reason: "the export is empty, but the expected head is seq " + fmt.Sprint(v.opts.ExpectHead.Seq)}
		}
		return nil
	}
	v.rep.ExportSigned = v.endsWithTrailer
	if !v.endsWithTrailer && !v.opts.AllowUnsignedTail {
		if v.rep.Unsigned > 0 {
			more := ""
			if n := v.rep.Unsigned - 1; n > 0 {
				more = fmt.Sprintf(" (and the %d after it, up to seq %d)", n, v.rep.LastSeq)
			}
			return &VerifyError{Seq: v.firstUnsigned, Line: v.firstUnsignedLine, Reason: fmt.Sprintf(
				"unsigned: record %d%s is not covered by any signature: it comes after the last checkpoint%s, and the export has no export trailer; "+
					"`signet audit export` ends every export with one, so records and signatures after seq %d may have been cut off "+
					"(accept an unsigned tail explicitly only for an export you know is incomplete: --allow-unsigned-tail)",
				v.firstUnsigned, more, v.lastCheckpointText(), v.rep.LastSeq)}
		}
		return &VerifyError{Seq: v.rep.LastSeq, Line: v.lastLine, Reason: fmt.Sprintf(
			"the export ends with checkpoint seq %d but has no export trailer: `signet audit export` ends every export with one, so records after seq %d may have been cut off "+
				"(accept it explicitly only for an export you know is incomplete: --allow-unsigned-tail)", v.rep.LastSeq, v.rep.LastSeq)}
	}
	if eh := v.opts.ExpectHead; eh != nil && !v.headSeen {
		if v.rep.LastSeq < eh.Seq {
			return &VerifyError{Seq: eh.Seq, Line: v.lastLine + 1, Reason: fmt.Sprintf(
				"the export ends at seq %d, before the expected head seq %d: records %d..%d are missing (truncated export)", v.rep.LastSeq, eh.Seq, v.rep.LastSeq+1, eh.Seq)}
		}
		return &VerifyError{Seq: v.rep.FirstSeq, Line: 1, Reason: fmt.Sprintf(
			"the export starts at seq %d, after the expected head seq %d: verify it together with the export that holds seq %d", v.rep.FirstSeq, eh.Seq, eh.Seq)}
	}
	if v.opts.MaxAge > 0 && !v.lastSigned.IsZero() {
		if oldest := v.now().Add(-v.opts.MaxAge); v.lastSigned.Before(oldest) {
			return &VerifyError{Seq: v.rep.LastSeq, Line: v.lastLine, Reason: fmt.Sprintf(
				"the last signature is from %s, more than %s before now: an old export, or one signed with an old key", formatTime(v.lastSigned), v.opts.MaxAge)}
		}
	}
	return nil
}

func (v *verifier) lastCheckpointText() string {
	if v.rep.LastCheckpointSeq == 0 {
		return " (there is none)"
	}
	return fmt.Sprintf(" (seq %d)", v.rep.LastCheckpointSeq)
}

// Head is a log position an auditor pins: the record with Seq must have
// Hash.
type Head struct {
	Seq  uint64
	Hash string
}

// ParseHead parses "seq:hash".
func ParseHead(s string) (Head, error) {
	seqText, hash, ok := strings.Cut(s, ":")
	var seq uint64
	if _, err := fmt.Sscan(seqText, &seq); !ok || err != nil || seq == 0 || fmt.Sprint(seq) != seqText {
		return Head{}, fmt.Errorf("eventlog: head %q: want SEQ:HASH (a seq from 1, a colon, a 64-digit hex hash)", s)
	}
	if !isHexHash(hash) {
		return Head{}, fmt.Errorf("eventlog: head %q: the hash must be 64 lower-case hex digits", s)
	}
	return Head{Seq: seq, Hash: hash}, nil
}
