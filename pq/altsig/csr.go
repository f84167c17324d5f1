package altsig

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"github.com/signet-id/signet/pq/internal/certder"
	"github.com/signet-id/signet/pq/mldsa"
	"golang.org/x/crypto/cryptobyte"
)

// CreateCertificateRequest creates a hybrid PKCS #10 request: an ordinary
// CSR made by crypto/x509 from template and signed by priv, that also
// carries three attributes with the same OIDs as the certificate extensions:
// subjectAltPublicKeyInfo (the ML-DSA public key of altPriv),
// altSignatureAlgorithm, and altSignatureValue — altPriv's signature over
// the CertificationRequestInfo without the altSignatureValue attribute,
// which proves possession of the ML-DSA key. The classical signature covers
// all attributes. priv signs twice (the first CSR is discarded); this runs
// on the node, once per key.
func CreateCertificateRequest(rand io.Reader, template *x509.CertificateRequest, priv crypto.Signer, altPriv crypto.Signer) ([]byte, error) {
	if template == nil || priv == nil {
		return nil, errors.New("altsig: nil template or signer")
	}
	altPub, err := mldsa.SignerPublicKey(altPriv)
	if err != nil {
		return nil, fmt.Errorf("altsig: alternative signer: %w", err)
	}
	sigAlg, hash, err := signingParams(priv.Public(), template.SignatureAlgorithm)
	if err != nil {
		return nil, err
	}
	draft, err := x509.CreateCertificateRequest(rand, template, priv)
	if err != nil {
		return nil, fmt.Errorf("altsig: %w", err)
	}
	dc, err := certder.ParseCertificate(draft)
	if err != nil {
		return nil, fmt.Errorf("altsig: %w", err)
	}
	cri, err := certder.ParseCRI(dc.TBS)
	if err != nil {
		return nil, fmt.Errorf("altsig: %w", err)
	}
	for _, id := range []asn1.ObjectIdentifier{OIDSubjectAltPublicKeyInfo, OIDAltSignatureAlgorithm, OIDAltSignatureValue} {
		if _, ok := cri.Find(id); ok {
			return nil, fmt.Errorf("altsig: template already carries attribute %s", id)
		}
	}
	spki, err := mldsa.MarshalPKIXPublicKey(altPub)
	if err != nil {
		return nil, err
	}
	algID, err := altPub.Algorithm().MarshalAlgorithmIdentifier()
	if err != nil {
		return nil, err
	}
	for _, a := range []struct {
		id  asn1.ObjectIdentifier
		val []byte
	}{{OIDSubjectAltPublicKeyInfo, spki}, {OIDAltSignatureAlgorithm, algID}} {
		attr, err := certder.NewAttribute(a.id, a.val)
		if err != nil {
			return nil, err
		}
		cri.Attributes = append(cri.Attributes, attr)
	}
	cri.SortAttributes()
	pre, err := cri.Marshal(OIDAltSignatureValue)
	if err != nil {
		return nil, err
	}
	altSig, err := mldsa.Sign(altPriv, pre)
	if err != nil {
		return nil, fmt.Errorf("altsig: %w", err)
	}
	var bs cryptobyte.Builder
	bs.AddASN1BitString(altSig)
	attr, err := certder.NewAttribute(OIDAltSignatureValue, bs.BytesOrPanic())
	if err != nil {
		return nil, err
	}
	cri.Attributes = append(cri.Attributes, attr)
	cri.SortAttributes() // removing altSignatureValue again yields pre
	info, err := cri.Marshal(nil)
	if err != nil {
		return nil, err
	}
	signed := info
	if hash != 0 {
		h := hash.New()
		h.Write(info)
		signed = h.Sum(nil)
	}
	sig, err := priv.Sign(rand, signed, hash)
	if err != nil {
		return nil, fmt.Errorf("altsig: classical signature: %w", err)
	}
	out, err := (&certder.Certificate{TBS: info, SignatureAlgorithm: sigAlg, Signature: sig}).Marshal()
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(out)
	if err != nil {
		return nil, fmt.Errorf("altsig: produced an unparsable request: %w", err)
	}
	if _, err := CheckCertificateRequest(csr); err != nil {
		return nil, fmt.Errorf("altsig: produced an invalid request: %w", err)
	}
	return out, nil
}

// CheckCertificateRequest checks a hybrid CSR: the classical signature
// (csr.CheckSignature) and the proof of possession of the ML-DSA key in its
// subjectAltPublicKeyInfo attribute. It returns that key. A CSR without the
// attribute yields ErrNoAltPublicKey (after a valid classical signature), so
// callers can accept classic CSRs where their policy allows.
func CheckCertificateRequest(csr *x509.CertificateRequest) (*mldsa.PublicKey, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("altsig: CSR classical signature: %w", err)
	}
	c, err := certder.ParseCertificate(csr.Raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	cri, err := certder.ParseCRI(c.TBS)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	one := func(id asn1.ObjectIdentifier) ([]byte, bool, error) {
		a, ok := cri.Find(id)
		if !ok {
			return nil, false, nil
		}
		if len(a.Values) != 1 {
			return nil, false, fmt.Errorf("%w: attribute %s must have exactly one value", ErrMalformed, id)
		}
		return a.Values[0], true, nil
	}
	spki, ok, err := one(OIDSubjectAltPublicKeyInfo)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNoAltPublicKey
	}
	pub, err := mldsa.ParsePKIXPublicKey(spki)
	if err != nil {
		return nil, fmt.Errorf("%w: subjectAltPublicKeyInfo: %v", ErrMalformed, err)
	}
	algDER, ok1, err := one(OIDAltSignatureAlgorithm)
	if err != nil {
		return nil, err
	}
	sigDER, ok2, err := one(OIDAltSignatureValue)
	if err != nil {
		return nil, err
	}
	if !ok1 || !ok2 {
		return nil, ErrNoAltSignature
	}
	alg, err := mldsa.ParseAlgorithmIdentifier(algDER)
	if err != nil {
		return nil, fmt.Errorf("%w: altSignatureAlgorithm: %v", ErrMalformed, err)
	}
	if alg != pub.Algorithm() {
		return nil, ErrAlgorithmMismatch
	}
	s := cryptobyte.String(sigDER)
	var bits asn1.BitString
	if !s.ReadASN1BitString(&bits) || !s.Empty() || bits.BitLength%8 != 0 {
		return nil, fmt.Errorf("%w: altSignatureValue is not a BIT STRING", ErrMalformed)
	}
	pre, err := cri.Marshal(OIDAltSignatureValue)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !pub.Verify(pre, bits.Bytes) {
		return nil, ErrBadSignature
	}
	return pub, nil
}
