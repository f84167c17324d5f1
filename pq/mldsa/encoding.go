package mldsa

import (
	"bytes"
	"crypto/subtle"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrMalformed is returned (wrapped) for DER input that does not follow the
// RFC 9881 encodings.
var ErrMalformed = errors.New("mldsa: malformed encoding")

func malformed(what string) error { return fmt.Errorf("%w: %s", ErrMalformed, what) }

// addAlgorithmIdentifier appends the DER AlgorithmIdentifier of a (OID only,
// parameters absent) to b.
func (a Algorithm) addAlgorithmIdentifier(b *cryptobyte.Builder) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(a.OID())
	})
}

// MarshalAlgorithmIdentifier returns the DER AlgorithmIdentifier of a:
// SEQUENCE { OID } with the parameters absent, as RFC 9881 requires.
func (a Algorithm) MarshalAlgorithmIdentifier() ([]byte, error) {
	if !a.Valid() {
		return nil, ErrUnknownAlgorithm
	}
	var b cryptobyte.Builder
	a.addAlgorithmIdentifier(&b)
	return b.Bytes()
}

// ParseAlgorithmIdentifier parses a DER AlgorithmIdentifier that must name
// ML-DSA-44 or ML-DSA-65 with absent parameters, and nothing after it.
func ParseAlgorithmIdentifier(der []byte) (Algorithm, error) {
	s := cryptobyte.String(der)
	alg, err := readAlgorithmIdentifier(&s)
	if err != nil {
		return 0, err
	}
	if !s.Empty() {
		return 0, malformed("trailing data after AlgorithmIdentifier")
	}
	return alg, nil
}

func readAlgorithmIdentifier(s *cryptobyte.String) (Algorithm, error) {
	var ai cryptobyte.String
	if !s.ReadASN1(&ai, cbasn1.SEQUENCE) {
		return 0, malformed("AlgorithmIdentifier is not a SEQUENCE")
	}
	var oid asn1.ObjectIdentifier
	if !ai.ReadASN1ObjectIdentifier(&oid) {
		return 0, malformed("AlgorithmIdentifier has no OID")
	}
	if !ai.Empty() {
		return 0, malformed("ML-DSA AlgorithmIdentifier parameters must be absent")
	}
	alg, ok := AlgorithmFromOID(oid)
	if !ok {
		return 0, fmt.Errorf("%w: %s", ErrUnknownAlgorithm, oid)
	}
	return alg, nil
}

// MarshalPKIXPublicKey returns the DER SubjectPublicKeyInfo of pub (RFC 9881
// §4: algorithm id-ml-dsa-*, parameters absent, the raw public key as the
// BIT STRING).
func MarshalPKIXPublicKey(pub *PublicKey) ([]byte, error) {
	if pub == nil || !pub.alg.Valid() {
		return nil, ErrInvalidKey
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		pub.alg.addAlgorithmIdentifier(b)
		b.AddASN1BitString(pub.raw)
	})
	return b.Bytes()
}

// ParsePKIXPublicKey parses a DER SubjectPublicKeyInfo holding an ML-DSA-44
// or ML-DSA-65 public key. It is strict: parameters must be absent, the BIT
// STRING must have no unused bits and the exact key size, and nothing may
// follow the structure.
func ParsePKIXPublicKey(der []byte) (*PublicKey, error) {
	s := cryptobyte.String(der)
	var spki cryptobyte.String
	if !s.ReadASN1(&spki, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, malformed("SubjectPublicKeyInfo is not a single SEQUENCE")
	}
	alg, err := readAlgorithmIdentifier(&spki)
	if err != nil {
		return nil, err
	}
	var bits asn1.BitString
	if !spki.ReadASN1BitString(&bits) || !spki.Empty() {
		return nil, malformed("subjectPublicKey is not a BIT STRING")
	}
	if bits.BitLength%8 != 0 {
		return nil, malformed("subjectPublicKey has unused bits")
	}
	return NewPublicKey(alg, bits.Bytes)
}

// MarshalPKCS8PrivateKey returns the DER PKCS#8 (OneAsymmetricKey, version 0)
// encoding of sk with the private key in the RFC 9881 seed form:
// privateKey OCTET STRING containing [0] IMPLICIT OCTET STRING (32-byte seed).
// Go 1.27's crypto/x509 and OpenSSL 3.5 both read this form.
func MarshalPKCS8PrivateKey(sk *PrivateKey) ([]byte, error) {
	if sk == nil || !sk.alg.Valid() {
		return nil, ErrInvalidKey
	}
	var inner cryptobyte.Builder
	inner.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
		b.AddBytes(sk.seed[:])
	})
	innerDER, err := inner.Bytes()
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		sk.alg.addAlgorithmIdentifier(b)
		b.AddASN1OctetString(innerDER)
	})
	return b.Bytes()
}

// ParsePKCS8PrivateKey parses a DER PKCS#8 ML-DSA private key. Of the three
// RFC 9881 private key forms it accepts "seed" and "both" (checking that the
// expanded key matches the seed, which is what OpenSSL 3.5 writes by default);
// the "expandedKey"-only form is rejected because Signet keeps keys as seeds.
// A public key in a version 1 (OneAsymmetricKey v2) structure must match.
func ParsePKCS8PrivateKey(der []byte) (*PrivateKey, error) {
	s := cryptobyte.String(der)
	var oak cryptobyte.String
	if !s.ReadASN1(&oak, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, malformed("PKCS#8 is not a single SEQUENCE")
	}
	var version int64
	if !oak.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) || (version != 0 && version != 1) {
		return nil, malformed("PKCS#8 version must be 0 or 1")
	}
	alg, err := readAlgorithmIdentifier(&oak)
	if err != nil {
		return nil, err
	}
	var privOctets cryptobyte.String
	if !oak.ReadASN1(&privOctets, cbasn1.OCTET_STRING) {
		return nil, malformed("PKCS#8 privateKey is not an OCTET STRING")
	}
	if !oak.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, malformed("PKCS#8 attributes")
	}
	var pubBits cryptobyte.String
	var hasPub bool
	if !oak.ReadOptionalASN1(&pubBits, &hasPub, cbasn1.Tag(1).ContextSpecific()) {
		return nil, malformed("PKCS#8 publicKey")
	}
	if !oak.Empty() {
		return nil, malformed("trailing data in PKCS#8")
	}
	if hasPub && version != 1 {
		return nil, malformed("PKCS#8 publicKey requires version 1")
	}

	seed, expanded, err := readMLDSAPrivateKey(privOctets)
	if err != nil {
		return nil, err
	}
	if seed == nil {
		return nil, fmt.Errorf("%w: expanded-only ML-DSA private keys are not supported (no seed)", ErrInvalidKey)
	}
	sk, err := NewKeyFromSeed(alg, seed)
	if err != nil {
		return nil, err
	}
	if expanded != nil {
		if subtle.ConstantTimeCompare(expanded, sk.expandedBytes()) != 1 {
			return nil, fmt.Errorf("%w: expanded key does not match seed", ErrInvalidKey)
		}
	}
	if hasPub {
		// [1] IMPLICIT BIT STRING: first byte is the unused-bits count.
		if len(pubBits) < 1 || pubBits[0] != 0 || !bytes.Equal(pubBits[1:], sk.pub.raw) {
			return nil, fmt.Errorf("%w: public key does not match seed", ErrInvalidKey)
		}
	}
	return sk, nil
}

// readMLDSAPrivateKey parses the RFC 9881 ML-DSA-*-PrivateKey CHOICE.
func readMLDSAPrivateKey(in cryptobyte.String) (seed, expanded []byte, err error) {
	var tag cbasn1.Tag
	var body cryptobyte.String
	if !in.ReadAnyASN1(&body, &tag) || !in.Empty() {
		return nil, nil, malformed("ML-DSA private key is not a single element")
	}
	switch tag {
	case cbasn1.Tag(0).ContextSpecific(): // seed [0] IMPLICIT OCTET STRING
		if len(body) != SeedSize {
			return nil, nil, malformed("ML-DSA seed must be 32 bytes")
		}
		return []byte(body), nil, nil
	case cbasn1.OCTET_STRING: // expandedKey
		return nil, []byte(body), nil
	case cbasn1.SEQUENCE: // both
		var sd, ex cryptobyte.String
		if !body.ReadASN1(&sd, cbasn1.OCTET_STRING) || !body.ReadASN1(&ex, cbasn1.OCTET_STRING) || !body.Empty() {
			return nil, nil, malformed("ML-DSA both form must be SEQUENCE { seed, expandedKey }")
		}
		if len(sd) != SeedSize {
			return nil, nil, malformed("ML-DSA seed must be 32 bytes")
		}
		return []byte(sd), []byte(ex), nil
	}
	return nil, nil, malformed("unknown ML-DSA private key form")
}

func (sk *PrivateKey) expandedBytes() []byte {
	switch sk.alg {
	case MLDSA44:
		var buf [mldsa44.PrivateKeySize]byte
		sk.k44.Pack(&buf)
		return buf[:]
	case MLDSA65:
		var buf [mldsa65.PrivateKeySize]byte
		sk.k65.Pack(&buf)
		return buf[:]
	}
	return nil
}
