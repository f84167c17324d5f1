// Package certder splits DER X.509 certificates and their TBSCertificate into
// raw elements and reassembles them, so that signatures can be computed over
// exactly the bytes the standards name (the TBSCertificate, or the X.509
// PreTBSCertificate used by alternative signatures).
package certder

import (
	"encoding/asn1"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrMalformed is returned (wrapped) for DER that is not a well-formed
// certificate.
var ErrMalformed = errors.New("certder: malformed certificate")

func malformed(what string) error { return fmt.Errorf("%w: %s", ErrMalformed, what) }

// Certificate is a certificate split into its three parts.
type Certificate struct {
	TBS                []byte // the whole TBSCertificate element
	SignatureAlgorithm []byte // the whole outer AlgorithmIdentifier element
	Signature          []byte // the contents of the signatureValue BIT STRING
}

// ParseCertificate splits a DER certificate. Nothing may follow it.
func ParseCertificate(der []byte) (*Certificate, error) {
	s := cryptobyte.String(der)
	var cert cryptobyte.String
	if !s.ReadASN1(&cert, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, malformed("not a single SEQUENCE")
	}
	var c Certificate
	var tbs, alg cryptobyte.String
	if !cert.ReadASN1Element(&tbs, cbasn1.SEQUENCE) {
		return nil, malformed("tbsCertificate")
	}
	if !cert.ReadASN1Element(&alg, cbasn1.SEQUENCE) {
		return nil, malformed("signatureAlgorithm")
	}
	var sig asn1.BitString
	if !cert.ReadASN1BitString(&sig) || sig.BitLength%8 != 0 {
		return nil, malformed("signatureValue")
	}
	if !cert.Empty() {
		return nil, malformed("trailing data in Certificate")
	}
	c.TBS, c.SignatureAlgorithm, c.Signature = tbs, alg, sig.Bytes
	return &c, nil
}

// Marshal reassembles a DER certificate.
func (c *Certificate) Marshal() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(c.TBS)
		b.AddBytes(c.SignatureAlgorithm)
		b.AddASN1BitString(c.Signature)
	})
	return b.Bytes()
}

// Extension is one certificate extension.
type Extension struct {
	ID       asn1.ObjectIdentifier
	Critical bool
	Value    []byte // contents of extnValue
	Raw      []byte // the whole Extension element
}

// TBS is a TBSCertificate split into its raw elements (each including its
// tag and length), in the order RFC 5280 §4.1 lists them.
type TBS struct {
	Version    []byte // [0] EXPLICIT element, nil if absent (v1)
	Serial     []byte
	Signature  []byte // the inner signature AlgorithmIdentifier
	Issuer     []byte
	Validity   []byte
	Subject    []byte
	SPKI       []byte
	IssuerUID  []byte // nil if absent
	SubjectUID []byte // nil if absent
	Extensions []Extension
	// HasExtensions records whether the [3] element was present.
	HasExtensions bool
}

// ParseTBS splits a whole TBSCertificate element. It rejects duplicate
// extensions (RFC 5280 §4.2) and trailing data.
func ParseTBS(der []byte) (*TBS, error) {
	s := cryptobyte.String(der)
	var tbs cryptobyte.String
	if !s.ReadASN1(&tbs, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, malformed("tbsCertificate is not a single SEQUENCE")
	}
	var t TBS
	if tbs.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		var v cryptobyte.String
		if !tbs.ReadASN1Element(&v, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			return nil, malformed("version")
		}
		t.Version = v
	}
	read := func(dst *[]byte, tag cbasn1.Tag, what string) error {
		var e cryptobyte.String
		if !tbs.ReadASN1Element(&e, tag) {
			return malformed(what)
		}
		*dst = e
		return nil
	}
	for _, f := range []struct {
		dst  *[]byte
		tag  cbasn1.Tag
		what string
	}{
		{&t.Serial, cbasn1.INTEGER, "serialNumber"},
		{&t.Signature, cbasn1.SEQUENCE, "signature"},
		{&t.Issuer, cbasn1.SEQUENCE, "issuer"},
		{&t.Validity, cbasn1.SEQUENCE, "validity"},
		{&t.Subject, cbasn1.SEQUENCE, "subject"},
		{&t.SPKI, cbasn1.SEQUENCE, "subjectPublicKeyInfo"},
	} {
		if err := read(f.dst, f.tag, f.what); err != nil {
			return nil, err
		}
	}
	if tbs.PeekASN1Tag(cbasn1.Tag(1).ContextSpecific()) {
		if err := read(&t.IssuerUID, cbasn1.Tag(1).ContextSpecific(), "issuerUniqueID"); err != nil {
			return nil, err
		}
	}
	if tbs.PeekASN1Tag(cbasn1.Tag(2).ContextSpecific()) {
		if err := read(&t.SubjectUID, cbasn1.Tag(2).ContextSpecific(), "subjectUniqueID"); err != nil {
			return nil, err
		}
	}
	var exts cryptobyte.String
	if !tbs.ReadOptionalASN1(&exts, &t.HasExtensions, cbasn1.Tag(3).Constructed().ContextSpecific()) {
		return nil, malformed("extensions")
	}
	if !tbs.Empty() {
		return nil, malformed("trailing data in tbsCertificate")
	}
	if t.HasExtensions {
		var seq cryptobyte.String
		if !exts.ReadASN1(&seq, cbasn1.SEQUENCE) || !exts.Empty() {
			return nil, malformed("extensions are not a SEQUENCE")
		}
		seen := map[string]bool{}
		for !seq.Empty() {
			var raw cryptobyte.String
			if !seq.ReadASN1Element(&raw, cbasn1.SEQUENCE) {
				return nil, malformed("extension")
			}
			e, err := parseExtension(raw)
			if err != nil {
				return nil, err
			}
			key := e.ID.String()
			if seen[key] {
				return nil, malformed("duplicate extension " + key)
			}
			seen[key] = true
			t.Extensions = append(t.Extensions, e)
		}
	}
	return &t, nil
}

func parseExtension(raw cryptobyte.String) (Extension, error) {
	e := Extension{Raw: raw}
	var body cryptobyte.String
	if !raw.ReadASN1(&body, cbasn1.SEQUENCE) {
		return e, malformed("extension")
	}
	if !body.ReadASN1ObjectIdentifier(&e.ID) {
		return e, malformed("extnID")
	}
	if body.PeekASN1Tag(cbasn1.BOOLEAN) {
		if !body.ReadASN1Boolean(&e.Critical) {
			return e, malformed("critical")
		}
	}
	var val cryptobyte.String
	if !body.ReadASN1(&val, cbasn1.OCTET_STRING) || !body.Empty() {
		return e, malformed("extnValue")
	}
	e.Value = val
	return e, nil
}

// NewExtension encodes an extension.
func NewExtension(id asn1.ObjectIdentifier, critical bool, value []byte) (Extension, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(id)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1OctetString(value)
	})
	raw, err := b.Bytes()
	if err != nil {
		return Extension{}, err
	}
	return Extension{ID: id, Critical: critical, Value: value, Raw: raw}, nil
}

// Find returns the extension with the given OID.
func (t *TBS) Find(id asn1.ObjectIdentifier) (Extension, bool) {
	for _, e := range t.Extensions {
		if e.ID.Equal(id) {
			return e, true
		}
	}
	return Extension{}, false
}

// Marshal encodes the TBSCertificate.
func (t *TBS) Marshal() ([]byte, error) {
	return t.marshal(true, nil)
}

// MarshalPre encodes the X.509 (2019) §7.2.2 PreTBSCertificate: the
// TBSCertificate without its signature field and without the extension
// whose OID is omit (the altSignatureValue). All other elements, including
// the order of the remaining extensions, are kept byte for byte.
func (t *TBS) MarshalPre(omit asn1.ObjectIdentifier) ([]byte, error) {
	return t.marshal(false, omit)
}

func (t *TBS) marshal(withSignature bool, omit asn1.ObjectIdentifier) ([]byte, error) {
	var kept []Extension
	for _, e := range t.Extensions {
		if omit != nil && e.ID.Equal(omit) {
			continue
		}
		kept = append(kept, e)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(t.Version)
		b.AddBytes(t.Serial)
		if withSignature {
			b.AddBytes(t.Signature)
		}
		b.AddBytes(t.Issuer)
		b.AddBytes(t.Validity)
		b.AddBytes(t.Subject)
		b.AddBytes(t.SPKI)
		b.AddBytes(t.IssuerUID)
		b.AddBytes(t.SubjectUID)
		if t.HasExtensions && (len(kept) > 0 || len(t.Extensions) == 0) {
			b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					for _, e := range kept {
						b.AddBytes(e.Raw)
					}
				})
			})
		}
	})
	return b.Bytes()
}
