package certder

import (
	"bytes"
	"encoding/asn1"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// A PKCS #10 CertificationRequest has the same outer shape as a certificate
// (info, signatureAlgorithm, BIT STRING), so ParseCertificate and
// Certificate.Marshal split and join it too; the TBS field then holds the
// CertificationRequestInfo.

// Attribute is one CSR attribute.
type Attribute struct {
	ID     asn1.ObjectIdentifier
	Values [][]byte // each a whole element
	Raw    []byte   // the whole Attribute element
}

// NewAttribute encodes an attribute with the given value elements.
func NewAttribute(id asn1.ObjectIdentifier, values ...[]byte) (Attribute, error) {
	sorted := slices.Clone(values)
	slices.SortFunc(sorted, bytes.Compare) // DER SET OF order
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(id)
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			for _, v := range sorted {
				b.AddBytes(v)
			}
		})
	})
	raw, err := b.Bytes()
	if err != nil {
		return Attribute{}, err
	}
	return Attribute{ID: id, Values: sorted, Raw: raw}, nil
}

// CRI is a CertificationRequestInfo split into raw elements.
type CRI struct {
	Version    []byte
	Subject    []byte
	SPKI       []byte
	Attributes []Attribute
}

// ParseCRI splits a whole CertificationRequestInfo element (RFC 2986 §4.1).
// Attribute types must be unique.
func ParseCRI(der []byte) (*CRI, error) {
	s := cryptobyte.String(der)
	var cri cryptobyte.String
	if !s.ReadASN1(&cri, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, malformed("CertificationRequestInfo is not a single SEQUENCE")
	}
	var c CRI
	var v, subj, spki, attrs cryptobyte.String
	if !cri.ReadASN1Element(&v, cbasn1.INTEGER) {
		return nil, malformed("CSR version")
	}
	if !cri.ReadASN1Element(&subj, cbasn1.SEQUENCE) {
		return nil, malformed("CSR subject")
	}
	if !cri.ReadASN1Element(&spki, cbasn1.SEQUENCE) {
		return nil, malformed("CSR subjectPKInfo")
	}
	if !cri.ReadASN1(&attrs, cbasn1.Tag(0).Constructed().ContextSpecific()) || !cri.Empty() {
		return nil, malformed("CSR attributes")
	}
	c.Version, c.Subject, c.SPKI = v, subj, spki
	seen := map[string]bool{}
	for !attrs.Empty() {
		var raw, elem, body, set cryptobyte.String
		if !attrs.ReadASN1Element(&raw, cbasn1.SEQUENCE) {
			return nil, malformed("CSR attribute")
		}
		elem = raw
		var a Attribute
		a.Raw = raw
		if !elem.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1ObjectIdentifier(&a.ID) ||
			!body.ReadASN1(&set, cbasn1.SET) || !body.Empty() {
			return nil, malformed("CSR attribute")
		}
		for !set.Empty() {
			var val cryptobyte.String
			var tag cbasn1.Tag
			if !set.ReadAnyASN1Element(&val, &tag) {
				return nil, malformed("CSR attribute value")
			}
			a.Values = append(a.Values, val)
		}
		if seen[a.ID.String()] {
			return nil, malformed("duplicate CSR attribute " + a.ID.String())
		}
		seen[a.ID.String()] = true
		c.Attributes = append(c.Attributes, a)
	}
	return &c, nil
}

// Find returns the attribute of the given type.
func (c *CRI) Find(id asn1.ObjectIdentifier) (Attribute, bool) {
	for _, a := range c.Attributes {
		if a.ID.Equal(id) {
			return a, true
		}
	}
	return Attribute{}, false
}

// SortAttributes puts the attributes in DER SET OF order.
func (c *CRI) SortAttributes() {
	slices.SortFunc(c.Attributes, func(a, b Attribute) int { return bytes.Compare(a.Raw, b.Raw) })
}

// Marshal encodes the CertificationRequestInfo, leaving out the attribute
// of type omit (if not nil). The attributes keep their order.
func (c *CRI) Marshal(omit asn1.ObjectIdentifier) ([]byte, error) {
	var raws [][]byte
	for _, a := range c.Attributes {
		if omit != nil && a.ID.Equal(omit) {
			continue
		}
		raws = append(raws, a.Raw)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(c.Version)
		b.AddBytes(c.Subject)
		b.AddBytes(c.SPKI)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			for _, r := range raws {
				b.AddBytes(r)
			}
		})
	})
	return b.Bytes()
}
