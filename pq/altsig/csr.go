package altsig

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
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
//
//   - requests the subjectAltPublicKeyInfo extension (2.5.29.72) holding
//     altPriv's ML-DSA public key, in the extensionRequest attribute like
//     any requested extension (x509.CertificateRequest.Extensions shows it);
//   - proves possession of that key with two attributes that reuse the
//     certificate extension OIDs: altSignatureAlgorithm (2.5.29.73, value
//     the AlgorithmIdentifier) and altSignatureValue (2.5.29.74, value a BIT
//     STRING): altPriv's signature over the CertificationRequestInfo without
//     the altSignatureValue attribute.
//
// The classical signature covers everything. priv signs twice (the first
// CSR is discarded); this runs on the node, once per key.
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
	spki, err := mldsa.MarshalPKIXPublicKey(altPub)
	if err != nil {
		return nil, err
	}
	tmpl := *template
	tmpl.ExtraExtensions = append(append([]pkix.Extension(nil), template.ExtraExtensions...),
		pkix.Extension{Id: OIDSubjectAltPublicKeyInfo, Value: spki})
	for _, e := range template.ExtraExtensions {
		if e.Id.Equal(OIDSubjectAltPublicKeyInfo) {
			return nil, errors.New("altsig: template already requests subjectAltPublicKeyInfo")
		}
	}
	draft, err := x509.CreateCertificateRequest(rand, &tmpl, priv)
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
	for _, id := range []asn1.ObjectIdentifier{OIDAltSignatureAlgorithm, OIDAltSignatureValue} {
		if _, ok := cri.Find(id); ok {
			return nil, fmt.Errorf("altsig: template already carries attribute %s", id)
		}
	}
	algID, err := altPub.Algorithm().MarshalAlgorithmIdentifier()
	if err != nil {
		return nil, err
	}
	attr, err := certder.NewAttribute(OIDAltSignatureAlgorithm, algID)
	if err != nil {
		return nil, err
	}
	cri.Attributes = append(cri.Attributes, attr)
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
	attr, err = certder.NewAttribute(OIDAltSignatureValue, bs.BytesOrPanic())
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
// requested subjectAltPublicKeyInfo extension. It returns that key. A CSR
// that requests no subjectAltPublicKeyInfo yields ErrNoAltPublicKey, one
// that requests it without proof yields ErrNoAltSignature (both after a
// valid classical signature), so callers can apply their own policy.
func CheckCertificateRequest(csr *x509.CertificateRequest) (*mldsa.PublicKey, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("altsig: CSR classical signature: %w", err)
	}
	var pub *mldsa.PublicKey
	for _, e := range csr.Extensions {
		if e.Id.Equal(OIDSubjectAltPublicKeyInfo) {
			p, err := mldsa.ParsePKIXPublicKey(e.Value)
			if err != nil {
				return nil, fmt.Errorf("%w: subjectAltPublicKeyInfo: %w", ErrMalformed, err)
			}
			pub = p
		}
	}
	if pub == nil {
		return nil, ErrNoAltPublicKey
	}
	c, err := certder.ParseCertificate(csr.Raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	cri, err := certder.ParseCRI(c.TBS)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
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
		return nil, fmt.Errorf("%w: altSignatureAlgorithm: %w", ErrMalformed, err)
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
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !pub.Verify(pre, bits.Bytes) {
		return nil, ErrBadSignature
	}
	return pub, nil
}
