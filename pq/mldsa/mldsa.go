// Package mldsa wraps the ML-DSA-44 and ML-DSA-65 signature schemes (FIPS 204)
// of github.com/cloudflare/circl with what Signet needs around them: key
// generation from an injectable randomness source, a crypto.Signer that signs
// hedged (randomized) with an empty context, and the RFC 9881 encodings of
// public keys (SubjectPublicKeyInfo) and private keys (PKCS#8, seed form).
package mldsa

import (
	"crypto"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// Algorithm names an ML-DSA parameter set.
type Algorithm int

// The supported ML-DSA parameter sets.
const (
	MLDSA44 Algorithm = iota + 1
	MLDSA65
)

// SeedSize is the size of an ML-DSA private key seed (ξ in FIPS 204).
const SeedSize = 32

var (
	// OIDMLDSA44 is id-ml-dsa-44 (RFC 9881), used both as signature algorithm
	// and as public key algorithm.
	OIDMLDSA44 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 17}
	// OIDMLDSA65 is id-ml-dsa-65 (RFC 9881).
	OIDMLDSA65 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 18}
)

// Errors returned by this package.
var (
	ErrUnknownAlgorithm = errors.New("mldsa: unknown ML-DSA algorithm")
	ErrInvalidKey       = errors.New("mldsa: invalid key")
	ErrHashedMessage    = errors.New("mldsa: pure ML-DSA signs the message itself, not a hash of it")
)

// String returns the FIPS 204 name, e.g. "ML-DSA-44" (also the JOSE alg name).
func (a Algorithm) String() string {
	switch a {
	case MLDSA44:
		return "ML-DSA-44"
	case MLDSA65:
		return "ML-DSA-65"
	}
	return fmt.Sprintf("Algorithm(%d)", int(a))
}

// Valid reports whether a is a supported parameter set.
func (a Algorithm) Valid() bool { return a == MLDSA44 || a == MLDSA65 }

// OID returns the RFC 9881 object identifier of a, or nil.
func (a Algorithm) OID() asn1.ObjectIdentifier {
	switch a {
	case MLDSA44:
		return OIDMLDSA44
	case MLDSA65:
		return OIDMLDSA65
	}
	return nil
}

// AlgorithmIdentifier returns the RFC 9881 AlgorithmIdentifier of a: the OID
// with the parameters field absent.
func (a Algorithm) AlgorithmIdentifier() pkix.AlgorithmIdentifier {
	return pkix.AlgorithmIdentifier{Algorithm: a.OID()}
}

// PublicKeySize is the size of an encoded public key of a.
func (a Algorithm) PublicKeySize() int {
	switch a {
	case MLDSA44:
		return mldsa44.PublicKeySize
	case MLDSA65:
		return mldsa65.PublicKeySize
	}
	return 0
}

// SignatureSize is the size of a signature of a.
func (a Algorithm) SignatureSize() int {
	switch a {
	case MLDSA44:
		return mldsa44.SignatureSize
	case MLDSA65:
		return mldsa65.SignatureSize
	}
	return 0
}

// AlgorithmFromOID maps an RFC 9881 OID to its Algorithm.
func AlgorithmFromOID(oid asn1.ObjectIdentifier) (Algorithm, bool) {
	switch {
	case oid.Equal(OIDMLDSA44):
		return MLDSA44, true
	case oid.Equal(OIDMLDSA65):
		return MLDSA65, true
	}
	return 0, false
}

// AlgorithmFromName maps "ML-DSA-44" / "ML-DSA-65" to its Algorithm.
func AlgorithmFromName(name string) (Algorithm, bool) {
	switch name {
	case "ML-DSA-44":
		return MLDSA44, true
	case "ML-DSA-65":
		return MLDSA65, true
	}
	return 0, false
}

// PublicKey is an ML-DSA public key. Decoding is cheap: the expansion of
// the key for verification happens once, on the first Verify.
type PublicKey struct {
	alg    Algorithm
	raw    []byte
	unpack sync.Once
	k44    *mldsa44.PublicKey
	k65    *mldsa65.PublicKey
}

// NewPublicKey decodes the FIPS 204 encoding of a public key of alg.
func NewPublicKey(alg Algorithm, raw []byte) (*PublicKey, error) {
	if !alg.Valid() {
		return nil, ErrUnknownAlgorithm
	}
	if len(raw) != alg.PublicKeySize() {
		return nil, fmt.Errorf("%w: %s public key is %d bytes, want %d", ErrInvalidKey, alg, len(raw), alg.PublicKeySize())
	}
	return &PublicKey{alg: alg, raw: append([]byte(nil), raw...)}, nil
}

// expand decodes the circl key on first use. Every byte string of the right
// size is a valid encoding, so it cannot fail.
func (pk *PublicKey) expand() {
	pk.unpack.Do(func() {
		defer cleanUpper()
		switch pk.alg {
		case MLDSA44:
			if pk.k44 == nil {
				var buf [mldsa44.PublicKeySize]byte
				copy(buf[:], pk.raw)
				pk.k44 = new(mldsa44.PublicKey)
				pk.k44.Unpack(&buf)
			}
		case MLDSA65:
			if pk.k65 == nil {
				var buf [mldsa65.PublicKeySize]byte
				copy(buf[:], pk.raw)
				pk.k65 = new(mldsa65.PublicKey)
				pk.k65.Unpack(&buf)
			}
		}
	})
}

// Algorithm returns the parameter set of the key.
func (pk *PublicKey) Algorithm() Algorithm { return pk.alg }

// Bytes returns the FIPS 204 encoding of the key.
func (pk *PublicKey) Bytes() []byte { return append([]byte(nil), pk.raw...) }

// Equal reports whether x is the same public key.
func (pk *PublicKey) Equal(x crypto.PublicKey) bool {
	o, ok := x.(*PublicKey)
	if !ok || o == nil || pk == nil {
		return false
	}
	return pk.alg == o.alg && subtle.ConstantTimeCompare(pk.raw, o.raw) == 1
}

// Verify reports whether sig is a valid pure ML-DSA signature of msg with an
// empty context string.
func (pk *PublicKey) Verify(msg, sig []byte) bool {
	if pk == nil || len(sig) != pk.alg.SignatureSize() {
		return false
	}
	pk.expand()
	defer cleanUpper()
	switch pk.alg {
	case MLDSA44:
		return mldsa44.Verify(pk.k44, msg, nil, sig)
	case MLDSA65:
		return mldsa65.Verify(pk.k65, msg, nil, sig)
	}
	return false
}

// PrivateKey is an ML-DSA private key that remembers its seed, so that it can
// be stored in the RFC 9881 seed form. It implements crypto.Signer.
type PrivateKey struct {
	alg  Algorithm
	seed [SeedSize]byte
	pub  *PublicKey
	k44  *mldsa44.PrivateKey
	k65  *mldsa65.PrivateKey
}

var _ crypto.Signer = (*PrivateKey)(nil)

// GenerateKey generates a key of alg, reading its 32-byte seed from rnd
// (crypto/rand.Reader if nil).
func GenerateKey(rnd io.Reader, alg Algorithm) (*PrivateKey, error) {
	if !alg.Valid() {
		return nil, ErrUnknownAlgorithm
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	var seed [SeedSize]byte
	if _, err := io.ReadFull(rnd, seed[:]); err != nil {
		return nil, fmt.Errorf("mldsa: reading seed: %w", err)
	}
	return NewKeyFromSeed(alg, seed[:])
}

// NewKeyFromSeed derives the key of alg from its 32-byte seed.
func NewKeyFromSeed(alg Algorithm, seed []byte) (*PrivateKey, error) {
	if !alg.Valid() {
		return nil, ErrUnknownAlgorithm
	}
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("%w: seed is %d bytes, want %d", ErrInvalidKey, len(seed), SeedSize)
	}
	sk := &PrivateKey{alg: alg}
	copy(sk.seed[:], seed)
	defer cleanUpper()
	switch alg {
	case MLDSA44:
		pub, priv := mldsa44.NewKeyFromSeed(&sk.seed)
		sk.k44 = priv
		sk.pub = &PublicKey{alg: alg, raw: pub.Bytes(), k44: pub}
	case MLDSA65:
		pub, priv := mldsa65.NewKeyFromSeed(&sk.seed)
		sk.k65 = priv
		sk.pub = &PublicKey{alg: alg, raw: pub.Bytes(), k65: pub}
	}
	return sk, nil
}

// Algorithm returns the parameter set of the key.
func (sk *PrivateKey) Algorithm() Algorithm { return sk.alg }

// Seed returns a copy of the 32-byte seed the key was derived from.
func (sk *PrivateKey) Seed() []byte { return append([]byte(nil), sk.seed[:]...) }

// PublicKey returns the public half of the key.
func (sk *PrivateKey) PublicKey() *PublicKey { return sk.pub }

// Public returns the public half of the key, a *PublicKey.
func (sk *PrivateKey) Public() crypto.PublicKey { return sk.pub }

// Equal reports whether x is the same private key.
func (sk *PrivateKey) Equal(x crypto.PrivateKey) bool {
	o, ok := x.(*PrivateKey)
	if !ok || o == nil || sk == nil {
		return false
	}
	return sk.alg == o.alg && subtle.ConstantTimeCompare(sk.seed[:], o.seed[:]) == 1
}

// Sign signs msg itself (pure ML-DSA, empty context) with hedged randomness:
// the per-signature random value comes from crypto/rand inside circl, so the
// rand argument is ignored. opts must be nil or have HashFunc() == 0.
func (sk *PrivateKey) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != 0 {
		return nil, ErrHashedMessage
	}
	sig := make([]byte, sk.alg.SignatureSize())
	var err error
	defer cleanUpper()
	switch sk.alg {
	case MLDSA44:
		err = mldsa44.SignTo(sk.k44, msg, nil, true, sig)
	case MLDSA65:
		err = mldsa65.SignTo(sk.k65, msg, nil, true, sig)
	default:
		return nil, ErrUnknownAlgorithm
	}
	if err != nil {
		return nil, fmt.Errorf("mldsa: sign: %w", err)
	}
	return sig, nil
}

// SignerPublicKey returns the ML-DSA public key of a crypto.Signer, or an
// error if the signer does not hold an ML-DSA key. It lets callers accept any
// crypto.Signer (for example one backed by a KMS) that signs with ML-DSA.
func SignerPublicKey(s crypto.Signer) (*PublicKey, error) {
	if s == nil {
		return nil, errors.New("mldsa: nil signer")
	}
	pk, ok := s.Public().(*PublicKey)
	if !ok || pk == nil {
		return nil, fmt.Errorf("mldsa: signer holds a %T, not an ML-DSA key", s.Public())
	}
	return pk, nil
}

// Sign signs msg with s, which must hold an ML-DSA key, and checks the length
// of the signature it returns.
func Sign(s crypto.Signer, msg []byte) ([]byte, error) {
	pk, err := SignerPublicKey(s)
	if err != nil {
		return nil, err
	}
	sig, err := s.Sign(nil, msg, crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("mldsa: sign: %w", err)
	}
	if len(sig) != pk.alg.SignatureSize() {
		return nil, fmt.Errorf("mldsa: signer returned a %d-byte signature, want %d", len(sig), pk.alg.SignatureSize())
	}
	return sig, nil
}
