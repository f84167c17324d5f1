package purecert

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/pq/internal/certder"
	"github.com/signet-id/signet/pq/mldsa"
)

// Errors wrapped in a *CertificateError by Verify; branch with errors.Is.
var (
	ErrNotMLDSA          = errors.New("purecert: certificate is not a pure ML-DSA certificate")
	ErrBadSignature      = errors.New("purecert: signature is invalid")
	ErrExpired           = errors.New("purecert: certificate is expired or not yet valid")
	ErrNotCA             = errors.New("purecert: issuer is not a CA")
	ErrNameChaining      = errors.New("purecert: issuer name does not match the issuer's subject")
	ErrPathLength        = errors.New("purecert: path length constraint violated")
	ErrCriticalExtension = errors.New("purecert: unhandled critical extension")
	ErrUnknownAuthority  = errors.New("purecert: chain does not lead to a trusted root")
	ErrKeyUsage          = errors.New("purecert: certificate not valid for the requested key usage")
)

// CertificateError says which certificate of the chain failed.
type CertificateError struct {
	Index   int    // position in the chain passed to Verify; len(chain) for the root
	Subject string // the certificate's subject, for messages
	Err     error
}

func (e *CertificateError) Error() string {
	return fmt.Sprintf("purecert: certificate %d (%s): %v", e.Index, e.Subject, e.Err)
}

func (e *CertificateError) Unwrap() error { return e.Err }

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Roots are the trusted pure ML-DSA root (or intermediate) certificates.
	Roots []*x509.Certificate
	// CurrentTime is the time to check validity at; zero means time.Now().
	CurrentTime time.Time
	// KeyUsages lists acceptable extended key usages of the leaf; empty or
	// containing x509.ExtKeyUsageAny accepts any.
	KeyUsages []x509.ExtKeyUsage
}

// PublicKey returns the ML-DSA subject public key of a pure certificate.
func PublicKey(cert *x509.Certificate) (*mldsa.PublicKey, error) {
	pk, err := mldsa.ParsePKIXPublicKey(cert.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotMLDSA, err)
	}
	return pk, nil
}

// IsPure reports whether cert has an ML-DSA subject key.
func IsPure(cert *x509.Certificate) bool {
	_, err := mldsa.ParsePKIXPublicKey(cert.RawSubjectPublicKeyInfo)
	return err == nil
}

// SignatureAlgorithm returns the ML-DSA algorithm cert is signed with,
// checking that the inner and outer signature algorithms agree.
func SignatureAlgorithm(cert *x509.Certificate) (mldsa.Algorithm, error) {
	c, err := certder.ParseCertificate(cert.Raw)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNotMLDSA, err)
	}
	tbs, err := certder.ParseTBS(c.TBS)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNotMLDSA, err)
	}
	if !bytes.Equal(tbs.Signature, c.SignatureAlgorithm) {
		return 0, fmt.Errorf("%w: inner and outer signature algorithms differ", ErrNotMLDSA)
	}
	alg, err := mldsa.ParseAlgorithmIdentifier(c.SignatureAlgorithm)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNotMLDSA, err)
	}
	return alg, nil
}

// CheckSignatureFrom checks that cert is signed by the ML-DSA key pub.
func CheckSignatureFrom(cert *x509.Certificate, pub *mldsa.PublicKey) error {
	alg, err := SignatureAlgorithm(cert)
	if err != nil {
		return err
	}
	if alg != pub.Algorithm() {
		return fmt.Errorf("%w: signed with %s, issuer key is %s", ErrBadSignature, alg, pub.Algorithm())
	}
	if !pub.Verify(cert.RawTBSCertificate, cert.Signature) {
		return ErrBadSignature
	}
	return nil
}

// Verify verifies a pure ML-DSA chain: chain[0] is the leaf, each next
// certificate issued the one before it, and the last is either one of
// opts.Roots or issued by one. It returns the chain with the root appended
// (unless the chain already ends in it). It checks every signature (the
// root's own self-signature excepted: it is a trust anchor), every validity
// period including the root's, that issuers are CAs (basicConstraints cA,
// keyCertSign when key usage is present), path length constraints, name
// chaining, critical extensions and the leaf's extended key usage.
func Verify(chain []*x509.Certificate, opts VerifyOptions) ([]*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, errors.New("purecert: empty chain")
	}
	now := opts.CurrentTime
	if now.IsZero() {
		now = time.Now()
	}
	certErr := func(i int, c *x509.Certificate, err error) error {
		return &CertificateError{Index: i, Subject: c.Subject.String(), Err: err}
	}
	for i, c := range chain {
		if err := checkCert(c, now); err != nil {
			return nil, certErr(i, c, err)
		}
	}
	if err := checkExtKeyUsage(chain[0], opts.KeyUsages); err != nil {
		return nil, certErr(0, chain[0], err)
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := checkIssued(chain[i], chain[i+1], chain[:i+1]); err != nil {
			return nil, certErr(i, chain[i], err)
		}
	}
	top := chain[len(chain)-1]
	for _, r := range opts.Roots {
		if bytes.Equal(r.Raw, top.Raw) {
			return chain, nil
		}
	}
	lastErr := ErrUnknownAuthority
	for _, r := range opts.Roots {
		if !bytes.Equal(r.RawSubject, top.RawIssuer) {
			continue
		}
		if err := checkCert(r, now); err != nil {
			lastErr = fmt.Errorf("%w: root: %w", ErrUnknownAuthority, err)
			continue
		}
		if err := checkIssued(top, r, chain); err != nil {
			lastErr = fmt.Errorf("%w: %w", ErrUnknownAuthority, err)
			continue
		}
		return append(append([]*x509.Certificate(nil), chain...), r), nil
	}
	return nil, certErr(len(chain)-1, top, lastErr)
}

func checkCert(c *x509.Certificate, now time.Time) error {
	if !IsPure(c) {
		return ErrNotMLDSA
	}
	if _, err := SignatureAlgorithm(c); err != nil {
		return err
	}
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return fmt.Errorf("%w: valid %s to %s, now %s", ErrExpired,
			c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if len(c.UnhandledCriticalExtensions) > 0 {
		return fmt.Errorf("%w: %v", ErrCriticalExtension, c.UnhandledCriticalExtensions)
	}
	return nil
}

// checkIssued checks that issuer issued c; below is the chain from the leaf
// up to and including c (for the path length constraint).
func checkIssued(c, issuer *x509.Certificate, below []*x509.Certificate) error {
	if !bytes.Equal(c.RawIssuer, issuer.RawSubject) {
		return ErrNameChaining
	}
	if !issuer.BasicConstraintsValid || !issuer.IsCA {
		return ErrNotCA
	}
	if issuer.KeyUsage != 0 && issuer.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%w: issuer key usage lacks keyCertSign", ErrNotCA)
	}
	if issuer.MaxPathLen > 0 || (issuer.MaxPathLen == 0 && issuer.MaxPathLenZero) {
		// Intermediate CAs between issuer and the leaf, self-issued ones
		// excepted (RFC 5280 §6.1.4 (l)).
		n := 0
		for _, b := range below[1:] {
			if !bytes.Equal(b.RawIssuer, b.RawSubject) {
				n++
			}
		}
		if n > issuer.MaxPathLen {
			return fmt.Errorf("%w: %d intermediates under a CA with pathLen %d", ErrPathLength, n, issuer.MaxPathLen)
		}
	}
	pub, err := PublicKey(issuer)
	if err != nil {
		return err
	}
	return CheckSignatureFrom(c, pub)
}

func checkExtKeyUsage(leaf *x509.Certificate, want []x509.ExtKeyUsage) error {
	if len(want) == 0 || len(leaf.ExtKeyUsage) == 0 && len(leaf.UnknownExtKeyUsage) == 0 {
		return nil
	}
	for _, w := range want {
		if w == x509.ExtKeyUsageAny {
			return nil
		}
	}
	for _, u := range leaf.ExtKeyUsage {
		if u == x509.ExtKeyUsageAny {
			return nil
		}
		for _, w := range want {
			if u == w {
				return nil
			}
		}
	}
	return ErrKeyUsage
}
