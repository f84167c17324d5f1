package purecert

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
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var oidExtensionRequest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}

// CreateCertificateRequest creates a PKCS #10 request for the ML-DSA key of
// priv, signed with it. From template it takes Subject (or RawSubject),
// DNSNames, EmailAddresses, IPAddresses, URIs (as a requested
// subjectAltName) and ExtraExtensions, like x509.CreateCertificateRequest.
// Go 1.26's x509.ParseCertificateRequest parses the result (PublicKey nil);
// CheckCertificateRequest verifies it.
func CreateCertificateRequest(_ io.Reader, template *x509.CertificateRequest, priv crypto.Signer) ([]byte, error) {
	if template == nil {
		return nil, errors.New("purecert: nil template")
	}
	pub, err := mldsa.SignerPublicKey(priv)
	if err != nil {
		return nil, fmt.Errorf("purecert: %w", err)
	}
	subject := template.RawSubject
	if len(subject) == 0 {
		if subject, err = asn1.Marshal(template.Subject.ToRDNSequence()); err != nil {
			return nil, fmt.Errorf("purecert: encoding subject: %w", err)
		}
	}
	exts, err := buildExtensions(&x509.Certificate{
		DNSNames: template.DNSNames, EmailAddresses: template.EmailAddresses,
		IPAddresses: template.IPAddresses, URIs: template.URIs, ExtraExtensions: template.ExtraExtensions,
	}, nil, nil, isEmptyName(subject))
	if err != nil {
		return nil, err
	}
	spki, err := mldsa.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sigAlg, err := pub.Algorithm().MarshalAlgorithmIdentifier()
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddBytes(subject)
		b.AddBytes(spki)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			if len(exts) == 0 {
				return
			}
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidExtensionRequest)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						for _, e := range exts {
							b.AddBytes(e.Raw)
						}
					})
				})
			})
		})
	})
	info, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("purecert: encoding request: %w", err)
	}
	sig, err := mldsa.Sign(priv, info)
	if err != nil {
		return nil, fmt.Errorf("purecert: %w", err)
	}
	out, err := (&certder.Certificate{TBS: info, SignatureAlgorithm: sigAlg, Signature: sig}).Marshal()
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(out)
	if err != nil {
		return nil, fmt.Errorf("purecert: produced an unparsable request: %w", err)
	}
	if _, err := CheckCertificateRequest(csr); err != nil {
		return nil, fmt.Errorf("purecert: produced an invalid request: %w", err)
	}
	return out, nil
}

// CheckCertificateRequest verifies the ML-DSA self-signature of a pure
// ML-DSA CSR (which Go 1.26's csr.CheckSignature cannot) and returns its
// public key.
func CheckCertificateRequest(csr *x509.CertificateRequest) (*mldsa.PublicKey, error) {
	pub, err := mldsa.ParsePKIXPublicKey(csr.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotMLDSA, err)
	}
	c, err := certder.ParseCertificate(csr.Raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotMLDSA, err)
	}
	alg, err := mldsa.ParseAlgorithmIdentifier(c.SignatureAlgorithm)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotMLDSA, err)
	}
	if alg != pub.Algorithm() {
		return nil, fmt.Errorf("%w: request signed with %s, key is %s", ErrBadSignature, alg, pub.Algorithm())
	}
	if !pub.Verify(csr.RawTBSCertificateRequest, csr.Signature) {
		return nil, ErrBadSignature
	}
	return pub, nil
}
