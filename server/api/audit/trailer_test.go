package audit_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"net/url"
	"testing"
	"time"

	auditv1 "github.com/signet-id/signet/proto/signet/audit/v1"
	"github.com/signet-id/signet/rotation/eventlog"
)

// testSigner is a CA and a server SVID (spiffe://example.org/spire/server)
// valid around t0.
func testSigner(t *testing.T) (*x509.Certificate, eventlog.KeySource) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	cert := func(tmpl, parent *x509.Certificate, pub crypto.PublicKey, k crypto.Signer) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, k)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	rootKey, srvKey := key(), key()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(30 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		URIs: []*url.URL{{Scheme: "spiffe", Host: "example.org"}},
	}
	root := cert(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	leaf := cert(&x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
		URIs:     []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: "/spire/server"}},
	}, root, srvKey.Public(), rootKey)
	return root, eventlog.StaticKey(srvKey, []*x509.Certificate{leaf})
}

// With a signer, every export ends with a trailer signed at export time
// over the last record sent; it is not stored in the log, and archiving
// takes the digest of the record lines.
func TestExportEndsWithSignedTrailer(t *testing.T) {
	root, signer := testSigner(t)
	roots := []*x509.Certificate{root}
	ctx, l, clk, c := setupWith(t, signer)
	fill(t, ctx, l, clk, 1200) // several chunks
	clk.Advance(time.Hour)
	got, err := export(t, ctx, c, &auditv1.ExportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(got, []byte("\n")), []byte("\n"))
	if len(lines) != 1201 || !eventlog.IsTrailer(lines[1200]) {
		t.Fatalf("%d lines; the last is %.60s", len(lines), lines[len(lines)-1])
	}
	rep, err := eventlog.Verify(bytes.NewReader(got), roots, eventlog.VerifyOptions{})
	if err != nil || !rep.ExportSigned || rep.SignedThrough != 1200 || rep.LogSize != 1200 || !rep.ExportTime.Equal(clk.Now()) ||
		rep.ExportSigner != "spiffe://example.org/spire/server" {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	if st, _ := l.State(ctx); st.Seq != 1200 {
		t.Fatalf("the export appended to the log: head %d", st.Seq)
	}
	// Without the trailer the export is truncated as far as the verifier
	// knows: it names the first unsigned record.
	cut := append(bytes.Join(lines[:1200], []byte("\n")), '\n')
	var ve *eventlog.VerifyError
	if _, err := eventlog.Verify(bytes.NewReader(cut), roots, eventlog.VerifyOptions{}); !errors.As(err, &ve) || ve.Seq != 1 || ve.Line != 1 {
		t.Fatalf("trailer stripped: %v", err)
	}

	// A range export is signed too; the trailer says how big the log was.
	part, err := export(t, ctx, c, &auditv1.ExportRequest{ToSeq: 700})
	if err != nil {
		t.Fatal(err)
	}
	rep, err = eventlog.Verify(bytes.NewReader(part), roots, eventlog.VerifyOptions{})
	if err != nil || rep.LastSeq != 700 || rep.LogSize != 1200 || !rep.ExportSigned {
		t.Fatalf("range: %+v %v", rep, err)
	}
	records := part[:bytes.LastIndex(bytes.TrimSuffix(part, []byte("\n")), []byte("\n"))+1]
	if _, err := c.Archive(ctx, &auditv1.ArchiveRequest{UptoSeq: 700, Sha256: eventlog.ExportDigest(records)}); err != nil {
		t.Fatalf("archive by the records' digest: %v", err)
	}
	rest, err := export(t, ctx, c, &auditv1.ExportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Archive file + rest: the archive's trailer sits between them.
	rep, err = eventlog.Verify(bytes.NewReader(append(part, rest...)), roots, eventlog.VerifyOptions{})
	if err != nil || rep.Records != 1201 || rep.Trailers != 2 || !rep.ExportSigned {
		t.Fatalf("archive+rest: %+v %v", rep, err)
	}
}

// Without a key that can sign (no server SVID yet, pure ML-DSA) the
// export is still served, without a trailer: it then verifies only as an
// explicitly accepted unsigned tail.
func TestExportWithoutSigningKey(t *testing.T) {
	noKey := eventlog.KeySourceFunc(func() (crypto.Signer, []*x509.Certificate, error) {
		return nil, nil, errors.New("no server SVID yet")
	})
	ctx, l, clk, c := setupWith(t, noKey)
	fill(t, ctx, l, clk, 5)
	got, err := export(t, ctx, c, &auditv1.ExportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(got, []byte(`{"trailer":`)) {
		t.Fatal("a trailer without a key")
	}
	var ve *eventlog.VerifyError
	if _, err := eventlog.Verify(bytes.NewReader(got), nil, eventlog.VerifyOptions{}); !errors.As(err, &ve) || ve.Seq != 1 {
		t.Fatalf("unsigned export: %v", err)
	}
	if rep, err := eventlog.Verify(bytes.NewReader(got), nil, eventlog.VerifyOptions{AllowUnsignedTail: true}); err != nil || rep.Records != 5 {
		t.Fatalf("%+v %v", rep, err)
	}
}
