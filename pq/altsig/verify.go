package altsig

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"

	"github.com/signet-id/signet/pq/internal/certder"
	"github.com/signet-id/signet/pq/mldsa"
	"golang.org/x/crypto/cryptobyte"
)

// Alt is the parsed alternative-signature material of a certificate. Fields
// whose extension is absent are zero.
type Alt struct {
	// PublicKey is the subject's alternative (ML-DSA) public key.
	PublicKey *mldsa.PublicKey
	// SignatureAlgorithm is the issuer's alternative algorithm.
	SignatureAlgorithm mldsa.Algorithm
	// Signature is the alternative signature over PreTBS.
	Signature []byte
	// PreTBS is the PreTBSCertificate the signature covers (nil if the
	// certificate has no altSignatureValue).
	PreTBS []byte
}

// Parse extracts the alternative-signature material of a DER certificate.
// A certificate without any of the three extensions yields an empty Alt and
// no error; malformed extensions yield ErrMalformed.
func Parse(certDER []byte) (*Alt, error) {
	c, err := certder.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	tbs, err := certder.ParseTBS(c.TBS)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	var a Alt
	if e, ok := tbs.Find(OIDSubjectAltPublicKeyInfo); ok {
		if a.PublicKey, err = mldsa.ParsePKIXPublicKey(e.Value); err != nil {
			return nil, fmt.Errorf("%w: subjectAltPublicKeyInfo: %w", ErrMalformed, err)
		}
	}
	if e, ok := tbs.Find(OIDAltSignatureAlgorithm); ok {
		if a.SignatureAlgorithm, err = mldsa.ParseAlgorithmIdentifier(e.Value); err != nil {
			return nil, fmt.Errorf("%w: altSignatureAlgorithm: %w", ErrMalformed, err)
		}
	}
	if e, ok := tbs.Find(OIDAltSignatureValue); ok {
		s := cryptobyte.String(e.Value)
		var bits asn1.BitString
		if !s.ReadASN1BitString(&bits) || !s.Empty() || bits.BitLength%8 != 0 {
			return nil, fmt.Errorf("%w: altSignatureValue is not a BIT STRING", ErrMalformed)
		}
		a.Signature = bits.Bytes
		if a.PreTBS, err = tbs.MarshalPre(OIDAltSignatureValue); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	return &a, nil
}

// HasAlt reports whether the certificate carries any of the three
// alternative-signature extensions.
func HasAlt(cert *x509.Certificate) bool {
	for _, e := range cert.Extensions {
		if e.Id.Equal(OIDSubjectAltPublicKeyInfo) || e.Id.Equal(OIDAltSignatureAlgorithm) || e.Id.Equal(OIDAltSignatureValue) {
			return true
		}
	}
	return false
}

// AltPublicKey returns the subject's alternative public key
// (subjectAltPublicKeyInfo), or ErrNoAltPublicKey.
func AltPublicKey(cert *x509.Certificate) (*mldsa.PublicKey, error) {
	for _, e := range cert.Extensions {
		if e.Id.Equal(OIDSubjectAltPublicKeyInfo) {
			pk, err := mldsa.ParsePKIXPublicKey(e.Value)
			if err != nil {
				return nil, fmt.Errorf("%w: subjectAltPublicKeyInfo: %w", ErrMalformed, err)
			}
			return pk, nil
		}
	}
	return nil, ErrNoAltPublicKey
}

// PreTBSCertificate returns the DER PreTBSCertificate of a certificate: its
// TBSCertificate without the signature field and without altSignatureValue.
func PreTBSCertificate(certDER []byte) ([]byte, error) {
	c, err := certder.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	tbs, err := certder.ParseTBS(c.TBS)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return tbs.MarshalPre(OIDAltSignatureValue)
}

// VerifyAlt checks the alternative signature of cert with its issuer's
// alternative public key (for a self-signed root, the root's own
// subjectAltPublicKeyInfo). It does not check the classical signature.
func VerifyAlt(cert *x509.Certificate, issuerAltPub *mldsa.PublicKey) error {
	if issuerAltPub == nil {
		return fmt.Errorf("%w: no issuer alternative key", ErrBadSignature)
	}
	a, err := Parse(cert.Raw)
	if err != nil {
		return err
	}
	if a.SignatureAlgorithm == 0 || a.Signature == nil {
		return ErrNoAltSignature
	}
	if a.SignatureAlgorithm != issuerAltPub.Algorithm() {
		return fmt.Errorf("%w: certificate says %s, issuer key is %s", ErrAlgorithmMismatch, a.SignatureAlgorithm, issuerAltPub.Algorithm())
	}
	if !issuerAltPub.Verify(a.PreTBS, a.Signature) {
		return ErrBadSignature
	}
	return nil
}
