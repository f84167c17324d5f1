// Package altsig issues and verifies hybrid X.509 certificates: a classical
// certificate (for Signet, ECDSA P-256) that also carries the ITU-T X.509
// (2019) alternative-signature extensions, non-critical, so that unmodified
// verifiers see an ordinary certificate:
//
//   - subjectAltPublicKeyInfo (2.5.29.72): the subject's ML-DSA public key as
//     an RFC 9881 SubjectPublicKeyInfo;
//   - altSignatureAlgorithm (2.5.29.73): the AlgorithmIdentifier of the
//     issuer's ML-DSA key (OID only, parameters absent);
//   - altSignatureValue (2.5.29.74): a BIT STRING holding a pure ML-DSA
//     signature (empty context) over the PreTBSCertificate, i.e. the
//     TBSCertificate without its signature field and without the
//     altSignatureValue extension (X.509 (2019) §7.2.2).
//
// The classical signature covers the final TBSCertificate, alternative
// extensions included.
package altsig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/signet-id/signet/pq/internal/certder"
	"github.com/signet-id/signet/pq/mldsa"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Extension OIDs of X.509 (2019) §9.8.
var (
	OIDSubjectAltPublicKeyInfo = asn1.ObjectIdentifier{2, 5, 29, 72}
	OIDAltSignatureAlgorithm   = asn1.ObjectIdentifier{2, 5, 29, 73}
	OIDAltSignatureValue       = asn1.ObjectIdentifier{2, 5, 29, 74}
)

// Errors; callers branch on them with errors.Is.
var (
	// ErrNoAltPublicKey: the certificate has no subjectAltPublicKeyInfo.
	ErrNoAltPublicKey = errors.New("altsig: certificate has no subjectAltPublicKeyInfo extension")
	// ErrNoAltSignature: altSignatureAlgorithm or altSignatureValue is missing.
	ErrNoAltSignature = errors.New("altsig: certificate has no alternative signature")
	// ErrMalformed: an alternative-signature extension does not parse.
	ErrMalformed = errors.New("altsig: malformed alternative-signature extension")
	// ErrAlgorithmMismatch: altSignatureAlgorithm is not the algorithm of the
	// issuer's alternative key.
	ErrAlgorithmMismatch = errors.New("altsig: altSignatureAlgorithm does not match the issuer's alternative key")
	// ErrBadSignature: the alternative signature does not verify.
	ErrBadSignature = errors.New("altsig: alternative signature is invalid")
)

// scratchKey signs the throwaway first pass of CreateCertificate. It is a
// fixed, public key: its signature is discarded and never leaves the package.
var scratchKey = sync.OnceValue(func() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
})

// CreateCertificate issues a hybrid certificate. It behaves like
// x509.CreateCertificate(rand, template, parent, pub, priv) — the template is
// interpreted by crypto/x509 — and in addition:
//
//   - embeds subjectAltPub as subjectAltPublicKeyInfo,
//   - signs the PreTBSCertificate with altPriv, which must hold an ML-DSA key
//     (mldsa.SignerPublicKey), recording its algorithm in
//     altSignatureAlgorithm and the signature in altSignatureValue.
//
// For a self-signed root pass template as parent and the root's own ML-DSA
// key as both altPriv and (its public half) subjectAltPub. priv is used for
// exactly one signature. The result is checked before it is returned: the
// classical signature with priv's public key and the alternative signature
// with altPriv's.
func CreateCertificate(rand io.Reader, template, parent *x509.Certificate, pub crypto.PublicKey, priv crypto.Signer, altPriv crypto.Signer, subjectAltPub *mldsa.PublicKey) ([]byte, error) {
	if template == nil || parent == nil {
		return nil, errors.New("altsig: nil template or parent")
	}
	if priv == nil {
		return nil, errors.New("altsig: nil issuer signer")
	}
	if subjectAltPub == nil {
		return nil, errors.New("altsig: nil subject alternative public key")
	}
	issuerAltPub, err := mldsa.SignerPublicKey(altPriv)
	if err != nil {
		return nil, fmt.Errorf("altsig: issuer alternative signer: %w", err)
	}
	for _, e := range template.ExtraExtensions {
		if e.Id.Equal(OIDSubjectAltPublicKeyInfo) || e.Id.Equal(OIDAltSignatureAlgorithm) || e.Id.Equal(OIDAltSignatureValue) {
			return nil, fmt.Errorf("altsig: template already carries extension %s", e.Id)
		}
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if parent.PublicKey != nil {
		if pp, ok := priv.Public().(equaler); !ok || !pp.Equal(parent.PublicKey) {
			return nil, errors.New("altsig: issuer signer does not match the parent's public key")
		}
	}
	sigAlgDER, hash, err := signingParams(priv.Public(), template.SignatureAlgorithm)
	if err != nil {
		return nil, err
	}

	spki, err := mldsa.MarshalPKIXPublicKey(subjectAltPub)
	if err != nil {
		return nil, fmt.Errorf("altsig: subject alternative key: %w", err)
	}
	algID, err := issuerAltPub.Algorithm().MarshalAlgorithmIdentifier()
	if err != nil {
		return nil, err
	}

	// First pass: let crypto/x509 lay out the TBSCertificate (serial,
	// names, SKI/AKI, SPIFFE extensions, ...) with the first two alternative
	// extensions, signed by a scratch key. Only the signature algorithm field
	// of its TBS differs from what we need, and the PreTBS omits that field.
	tmpl := *template
	tmpl.SignatureAlgorithm = x509.UnknownSignatureAlgorithm
	tmpl.ExtraExtensions = append(append([]pkix.Extension(nil), template.ExtraExtensions...),
		pkix.Extension{Id: OIDSubjectAltPublicKeyInfo, Value: spki},
		pkix.Extension{Id: OIDAltSignatureAlgorithm, Value: algID},
	)
	par := *parent
	if parent == template {
		par = tmpl
	}
	scratch := scratchKey()
	par.PublicKey = scratch.Public()
	draft, err := x509.CreateCertificate(rand, &tmpl, &par, pub, scratch)
	if err != nil {
		return nil, fmt.Errorf("altsig: %w", err)
	}
	dc, err := certder.ParseCertificate(draft)
	if err != nil {
		return nil, fmt.Errorf("altsig: %w", err)
	}
	tbs, err := certder.ParseTBS(dc.TBS)
	if err != nil {
		return nil, fmt.Errorf("altsig: %w", err)
	}
	tbs.Signature = sigAlgDER

	pre, err := tbs.MarshalPre(OIDAltSignatureValue)
	if err != nil {
		return nil, fmt.Errorf("altsig: PreTBSCertificate: %w", err)
	}
	altSig, err := mldsa.Sign(altPriv, pre)
	if err != nil {
		return nil, fmt.Errorf("altsig: %w", err)
	}
	var bs cryptobyte.Builder
	bs.AddASN1BitString(altSig)
	altSigDER, err := bs.Bytes()
	if err != nil {
		return nil, err
	}
	ext, err := certder.NewExtension(OIDAltSignatureValue, false, altSigDER)
	if err != nil {
		return nil, err
	}
	tbs.Extensions = append(tbs.Extensions, ext)
	finalTBS, err := tbs.Marshal()
	if err != nil {
		return nil, err
	}

	signed := finalTBS
	if hash != 0 {
		h := hash.New()
		h.Write(finalTBS)
		signed = h.Sum(nil)
	}
	sig, err := priv.Sign(rand, signed, hash) // RSA: PKCS #1 v1.5

	if err != nil {
		return nil, fmt.Errorf("altsig: classical signature: %w", err)
	}
	out, err := (&certder.Certificate{TBS: finalTBS, SignatureAlgorithm: sigAlgDER, Signature: sig}).Marshal()
	if err != nil {
		return nil, err
	}

	// Check what we produced, as crypto/x509 does: it must parse and both
	// signatures must verify (a faulty or mismatched signer is caught here).
	if _, err := x509.ParseCertificate(out); err != nil {
		return nil, fmt.Errorf("altsig: produced an unparsable certificate: %w", err)
	}
	if err := checkClassic(priv.Public(), hash, signed, sig); err != nil {
		return nil, fmt.Errorf("altsig: classical signature returned by signer is invalid: %w", err)
	}
	if !issuerAltPub.Verify(pre, altSig) {
		return nil, errors.New("altsig: alternative signature returned by signer is invalid")
	}
	return out, nil
}

// checkClassic verifies a classical signature over signed (a digest, or the
// message itself for Ed25519).
func checkClassic(pub crypto.PublicKey, hash crypto.Hash, signed, sig []byte) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, signed, sig) {
			return errors.New("ECDSA verification failure")
		}
		return nil
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, hash, signed, sig)
	case ed25519.PublicKey:
		if !ed25519.Verify(k, signed, sig) {
			return errors.New("Ed25519 verification failure")
		}
		return nil
	}
	return fmt.Errorf("unsupported key type %T", pub)
}

// signingParams mirrors crypto/x509's choice of signature algorithm for a
// key: ECDSA with the hash matching the curve, Ed25519, or RSA PKCS #1 v1.5
// with SHA-256. A requested algorithm must fit the key.
func signingParams(pub crypto.PublicKey, requested x509.SignatureAlgorithm) ([]byte, crypto.Hash, error) {
	type choice struct {
		alg  x509.SignatureAlgorithm
		oid  asn1.ObjectIdentifier
		hash crypto.Hash
		null bool
	}
	var (
		ecdsa256 = choice{x509.ECDSAWithSHA256, asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, crypto.SHA256, false}
		ecdsa384 = choice{x509.ECDSAWithSHA384, asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, crypto.SHA384, false}
		ecdsa512 = choice{x509.ECDSAWithSHA512, asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, crypto.SHA512, false}
		rsa256   = choice{x509.SHA256WithRSA, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, crypto.SHA256, true}
		rsa384   = choice{x509.SHA384WithRSA, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}, crypto.SHA384, true}
		rsa512   = choice{x509.SHA512WithRSA, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}, crypto.SHA512, true}
		ed       = choice{x509.PureEd25519, asn1.ObjectIdentifier{1, 3, 101, 112}, 0, false}
	)
	var def choice
	var allowed []choice
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		allowed = []choice{ecdsa256, ecdsa384, ecdsa512}
		switch k.Curve {
		case elliptic.P256():
			def = ecdsa256
		case elliptic.P384():
			def = ecdsa384
		case elliptic.P521():
			def = ecdsa512
		default:
			return nil, 0, errors.New("altsig: unsupported elliptic curve")
		}
	case *rsa.PublicKey:
		def, allowed = rsa256, []choice{rsa256, rsa384, rsa512}
	case ed25519.PublicKey:
		def, allowed = ed, []choice{ed}
	default:
		return nil, 0, fmt.Errorf("altsig: unsupported issuer key type %T", pub)
	}
	c := def
	if requested != x509.UnknownSignatureAlgorithm {
		found := false
		for _, a := range allowed {
			if a.alg == requested {
				c, found = a, true
			}
		}
		if !found {
			return nil, 0, fmt.Errorf("altsig: signature algorithm %v does not fit issuer key type %T", requested, pub)
		}
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(c.oid)
		if c.null {
			b.AddASN1NULL()
		}
	})
	der, err := b.Bytes()
	return der, c.hash, err
}
