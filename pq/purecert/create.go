// Package purecert issues and verifies pure ML-DSA X.509 certificates per
// RFC 9881: subject keys and certificate signatures are ML-DSA (OIDs
// 2.16.840.1.101.3.4.3.17 and .18, parameters absent, empty context).
//
// Go 1.26's crypto/x509 can parse such certificates (with PublicKey nil) but
// can neither sign nor verify them, so this package lays out the
// TBSCertificate itself and verifies chains itself: signatures, validity,
// basic constraints, key usage, path length and name chaining.
package purecert

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"

	"github.com/signet-id/signet/pq/internal/certder"
	"github.com/signet-id/signet/pq/mldsa"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	oidExtKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtAuthorityKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
)

var extKeyUsageOIDs = map[x509.ExtKeyUsage]asn1.ObjectIdentifier{
	x509.ExtKeyUsageAny:             {2, 5, 29, 37, 0},
	x509.ExtKeyUsageServerAuth:      {1, 3, 6, 1, 5, 5, 7, 3, 1},
	x509.ExtKeyUsageClientAuth:      {1, 3, 6, 1, 5, 5, 7, 3, 2},
	x509.ExtKeyUsageCodeSigning:     {1, 3, 6, 1, 5, 5, 7, 3, 3},
	x509.ExtKeyUsageEmailProtection: {1, 3, 6, 1, 5, 5, 7, 3, 4},
	x509.ExtKeyUsageTimeStamping:    {1, 3, 6, 1, 5, 5, 7, 3, 8},
	x509.ExtKeyUsageOCSPSigning:     {1, 3, 6, 1, 5, 5, 7, 3, 9},
}

// CreateCertificate issues a pure ML-DSA certificate, with the semantics of
// x509.CreateCertificate for the template fields a SPIFFE authority uses:
//
//   - SerialNumber (random 159 bits if nil), Subject or RawSubject,
//     NotBefore, NotAfter;
//   - KeyUsage (critical), ExtKeyUsage and UnknownExtKeyUsage,
//     BasicConstraintsValid / IsCA / MaxPathLen / MaxPathLenZero (critical);
//   - SubjectKeyId (for CAs derived from pub by RFC 7093 method 1 if unset),
//     AuthorityKeyId (the parent's SubjectKeyId unless self-signed);
//   - DNSNames, EmailAddresses, IPAddresses, URIs as subjectAltName
//     (critical when the subject is empty);
//   - ExtraExtensions, which replace a generated extension with the same OID.
//
// Template fields outside that list that would add content (name
// constraints, policies, CRL distribution points, AIA) are rejected rather
// than dropped. pub is the subject's ML-DSA key; priv signs and must hold an
// ML-DSA key. For a self-signed root pass template as parent and the root's
// own key as priv.
func CreateCertificate(rand io.Reader, template, parent *x509.Certificate, pub *mldsa.PublicKey, priv crypto.Signer) ([]byte, error) {
	if template == nil || parent == nil {
		return nil, errors.New("purecert: nil template or parent")
	}
	if pub == nil {
		return nil, errors.New("purecert: nil subject public key")
	}
	issuerPub, err := mldsa.SignerPublicKey(priv)
	if err != nil {
		return nil, fmt.Errorf("purecert: issuer: %w", err)
	}
	if err := checkUnsupported(template); err != nil {
		return nil, err
	}
	if parent == template {
		if !issuerPub.Equal(pub) {
			return nil, errors.New("purecert: self-signed certificate must be signed by the subject key")
		}
	} else if len(parent.RawSubjectPublicKeyInfo) > 0 {
		ppub, err := mldsa.ParsePKIXPublicKey(parent.RawSubjectPublicKeyInfo)
		if err != nil {
			return nil, fmt.Errorf("purecert: parent public key: %w", err)
		}
		if !ppub.Equal(issuerPub) {
			return nil, errors.New("purecert: issuer signer does not match the parent's public key")
		}
	}

	serial := template.SerialNumber
	if serial == nil {
		b := make([]byte, 20)
		if _, err := io.ReadFull(rand, b); err != nil {
			return nil, fmt.Errorf("purecert: serial: %w", err)
		}
		b[0] &= 0x7f
		serial = new(big.Int).SetBytes(b)
	}
	if serial.Sign() < 0 {
		return nil, errors.New("purecert: serial number must be positive")
	}
	if template.BasicConstraintsValid && template.MaxPathLen < -1 {
		return nil, errors.New("purecert: invalid MaxPathLen, must be greater or equal to -1")
	}
	if template.BasicConstraintsValid && !template.IsCA && template.MaxPathLen != -1 && (template.MaxPathLen != 0 || template.MaxPathLenZero) {
		return nil, errors.New("purecert: only CAs are allowed to specify MaxPathLen")
	}
	issuerName, err := nameBytes(parent)
	if err != nil {
		return nil, err
	}
	subjectName, err := nameBytes(template)
	if err != nil {
		return nil, err
	}
	spki, err := mldsa.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sigAlg, err := issuerPub.Algorithm().MarshalAlgorithmIdentifier()
	if err != nil {
		return nil, err
	}

	skid := template.SubjectKeyId
	if len(skid) == 0 && template.IsCA {
		h := sha256.Sum256(pub.Bytes())
		skid = h[:20]
	}
	akid := template.AuthorityKeyId
	if !bytes.Equal(issuerName, subjectName) && len(parent.SubjectKeyId) > 0 {
		akid = parent.SubjectKeyId
	}
	exts, err := buildExtensions(template, skid, akid, isEmptyName(subjectName))
	if err != nil {
		return nil, err
	}

	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1Int64(2)
		})
		b.AddASN1BigInt(serial)
		b.AddBytes(sigAlg)
		b.AddBytes(issuerName)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addTime(b, template.NotBefore)
			addTime(b, template.NotAfter)
		})
		b.AddBytes(subjectName)
		b.AddBytes(spki)
		if len(exts) > 0 {
			b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					for _, e := range exts {
						b.AddBytes(e.Raw)
					}
				})
			})
		}
	})
	tbs, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("purecert: encoding TBSCertificate: %w", err)
	}
	sig, err := mldsa.Sign(priv, tbs)
	if err != nil {
		return nil, fmt.Errorf("purecert: %w", err)
	}
	out, err := (&certder.Certificate{TBS: tbs, SignatureAlgorithm: sigAlg, Signature: sig}).Marshal()
	if err != nil {
		return nil, err
	}
	if _, err := x509.ParseCertificate(out); err != nil {
		return nil, fmt.Errorf("purecert: produced an unparsable certificate: %w", err)
	}
	if !issuerPub.Verify(tbs, sig) {
		return nil, errors.New("purecert: signature returned by signer is invalid")
	}
	return out, nil
}

func checkUnsupported(t *x509.Certificate) error {
	switch {
	case t.PermittedDNSDomainsCritical, len(t.PermittedDNSDomains) > 0, len(t.ExcludedDNSDomains) > 0,
		len(t.PermittedIPRanges) > 0, len(t.ExcludedIPRanges) > 0,
		len(t.PermittedEmailAddresses) > 0, len(t.ExcludedEmailAddresses) > 0,
		len(t.PermittedURIDomains) > 0, len(t.ExcludedURIDomains) > 0:
		return errors.New("purecert: name constraints are not supported")
	case len(t.PolicyIdentifiers) > 0, len(t.Policies) > 0:
		return errors.New("purecert: certificate policies are not supported")
	case len(t.CRLDistributionPoints) > 0:
		return errors.New("purecert: CRL distribution points are not supported")
	case len(t.OCSPServer) > 0, len(t.IssuingCertificateURL) > 0:
		return errors.New("purecert: authority information access is not supported")
	}
	return nil
}

func nameBytes(c *x509.Certificate) ([]byte, error) {
	if len(c.RawSubject) > 0 {
		return c.RawSubject, nil
	}
	der, err := asn1.Marshal(c.Subject.ToRDNSequence())
	if err != nil {
		return nil, fmt.Errorf("purecert: encoding name: %w", err)
	}
	return der, nil
}

func isEmptyName(der []byte) bool { return bytes.Equal(der, []byte{0x30, 0x00}) }

// addTime encodes a Validity time as RFC 5280 §4.1.2.5 requires: UTCTime
// through 2049, GeneralizedTime from 2050, always UTC with seconds.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC().Truncate(time.Second)
	if t.Year() >= 1950 && t.Year() < 2050 {
		b.AddASN1UTCTime(t)
	} else {
		b.AddASN1GeneralizedTime(t)
	}
}

func hasExtra(t *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	for _, e := range t.ExtraExtensions {
		if e.Id.Equal(oid) {
			return true
		}
	}
	return false
}

func buildExtensions(t *x509.Certificate, skid, akid []byte, emptySubject bool) ([]certder.Extension, error) {
	var exts []certder.Extension
	add := func(oid asn1.ObjectIdentifier, critical bool, f func(b *cryptobyte.Builder)) error {
		if hasExtra(t, oid) {
			return nil
		}
		var b cryptobyte.Builder
		f(&b)
		v, err := b.Bytes()
		if err != nil {
			return fmt.Errorf("purecert: encoding extension %s: %w", oid, err)
		}
		e, err := certder.NewExtension(oid, critical, v)
		if err != nil {
			return err
		}
		exts = append(exts, e)
		return nil
	}

	if t.KeyUsage != 0 {
		if err := add(oidExtKeyUsage, true, func(b *cryptobyte.Builder) { addKeyUsage(b, t.KeyUsage) }); err != nil {
			return nil, err
		}
	}
	if len(t.ExtKeyUsage) > 0 || len(t.UnknownExtKeyUsage) > 0 {
		var oids []asn1.ObjectIdentifier
		for _, u := range t.ExtKeyUsage {
			oid, ok := extKeyUsageOIDs[u]
			if !ok {
				return nil, fmt.Errorf("purecert: unsupported extended key usage %d", u)
			}
			oids = append(oids, oid)
		}
		oids = append(oids, t.UnknownExtKeyUsage...)
		if err := add(oidExtExtKeyUsage, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, o := range oids {
					b.AddASN1ObjectIdentifier(o)
				}
			})
		}); err != nil {
			return nil, err
		}
	}
	if t.BasicConstraintsValid {
		if err := add(oidExtBasicConstraints, true, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if t.IsCA {
					b.AddASN1Boolean(true)
					if t.MaxPathLen > 0 || (t.MaxPathLen == 0 && t.MaxPathLenZero) {
						b.AddASN1Int64(int64(t.MaxPathLen))
					}
				}
			})
		}); err != nil {
			return nil, err
		}
	}
	if len(skid) > 0 {
		if err := add(oidExtSubjectKeyID, false, func(b *cryptobyte.Builder) { b.AddASN1OctetString(skid) }); err != nil {
			return nil, err
		}
	}
	if len(akid) > 0 {
		if err := add(oidExtAuthorityKeyID, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(akid) })
			})
		}); err != nil {
			return nil, err
		}
	}
	if len(t.DNSNames) > 0 || len(t.EmailAddresses) > 0 || len(t.IPAddresses) > 0 || len(t.URIs) > 0 {
		var sanErr error
		if err := add(oidExtSubjectAltName, emptySubject, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, d := range t.DNSNames {
					if !isIA5(d) {
						sanErr = fmt.Errorf("purecert: DNS SAN %q is not ASCII", d)
					}
					b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(d)) })
				}
				for _, e := range t.EmailAddresses {
					if !isIA5(e) {
						sanErr = fmt.Errorf("purecert: email SAN %q is not ASCII", e)
					}
					b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(e)) })
				}
				for _, ip := range t.IPAddresses {
					raw := ip.To4()
					if raw == nil {
						raw = ip.To16()
					}
					if raw == nil || len(ip) != net.IPv4len && len(ip) != net.IPv6len {
						sanErr = fmt.Errorf("purecert: invalid IP SAN %v", ip)
					}
					b.AddASN1(cbasn1.Tag(7).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(raw) })
				}
				for _, u := range t.URIs {
					s := u.String()
					if !isIA5(s) {
						sanErr = fmt.Errorf("purecert: URI SAN %q is not ASCII", s)
					}
					b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
				}
			})
		}); err != nil {
			return nil, err
		}
		if sanErr != nil {
			return nil, sanErr
		}
	}
	for _, e := range t.ExtraExtensions {
		ext, err := certder.NewExtension(e.Id, e.Critical, e.Value)
		if err != nil {
			return nil, err
		}
		exts = append(exts, ext)
	}
	seen := map[string]bool{}
	for _, e := range exts {
		if seen[e.ID.String()] {
			return nil, fmt.Errorf("purecert: duplicate extension %s", e.ID)
		}
		seen[e.ID.String()] = true
	}
	return exts, nil
}

func isIA5(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// addKeyUsage encodes KeyUsage as a DER named-bit BIT STRING: bit 0
// (digitalSignature) is the most significant bit of the first byte, and
// trailing zero bits are dropped.
func addKeyUsage(b *cryptobyte.Builder, ku x509.KeyUsage) {
	var bits [2]byte
	last := -1
	for i := 0; i < 9; i++ {
		if ku&(1<<i) != 0 {
			bits[i/8] |= 0x80 >> (i % 8)
			last = i
		}
	}
	n := last/8 + 1
	unused := byte(n*8 - (last + 1))
	b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
		b.AddUint8(unused)
		b.AddBytes(bits[:n])
	})
}
