// Package jwt issues and verifies the JWT-SVIDs of Signet's three credential
// profiles:
//
//   - classic: a compact JWS with alg ES256 (or ES384/RS256);
//   - hybrid: the classic token, whose payload also carries the private
//     claim "signet_mldsa" = {"alg","kid","sig"}: an ML-DSA signature (pure,
//     empty context) over the RFC 8785 canonical JSON of all other claims.
//     The header keeps only alg/kid/typ, as the JWT-SVID spec demands, so
//     unmodified SPIFFE verifiers accept the token and ignore the claim;
//   - pq: a compact JWS with alg "ML-DSA-44" or "ML-DSA-65" (RFC 9964),
//     verified with AKP JSON Web Keys.
//
// Verify checks whichever signatures a token carries and enforces a
// RequirePQ policy.
package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/signet-id/signet/pq/jcs"
	"github.com/signet-id/signet/pq/mldsa"
)

// ClaimName is the private claim carrying the ML-DSA signature of a hybrid
// token.
const ClaimName = "signet_mldsa"

// MaxTokenSize bounds the size of a token Verify and Parse accept.
const MaxTokenSize = 64 << 10

// Profile says which signatures a token carries.
type Profile int

// The credential profiles.
const (
	Classic Profile = iota + 1
	Hybrid
	PQ
)

func (p Profile) String() string {
	switch p {
	case Classic:
		return "classic"
	case Hybrid:
		return "hybrid"
	case PQ:
		return "pq"
	}
	return fmt.Sprintf("Profile(%d)", int(p))
}

// Errors; callers branch on them with errors.Is.
var (
	ErrMalformed        = errors.New("jwt: malformed token")
	ErrUnsupportedAlg   = errors.New("jwt: unsupported algorithm")
	ErrUnknownKey       = errors.New("jwt: unknown key id")
	ErrClassicSignature = errors.New("jwt: classical signature is invalid")
	ErrPQSignature      = errors.New("jwt: ML-DSA signature is invalid")
	ErrPQRequired       = errors.New("jwt: policy requires an ML-DSA signature")
	// ErrDowngrade: the key set publishes ML-DSA keys (hybrid or pq trust
	// domain) but the token has no valid ML-DSA signature, e.g. the
	// signet_mldsa claim was stripped and the token re-signed classically.
	ErrDowngrade         = errors.New("jwt: trust domain publishes ML-DSA keys but the token has no valid ML-DSA signature (downgrade); allow classical tokens explicitly to accept it")
	ErrMissingClaim      = errors.New("jwt: required claim missing")
	ErrExpired           = errors.New("jwt: token has expired")
	ErrNotYetValid       = errors.New("jwt: token is not yet valid")
	ErrAudience          = errors.New("jwt: audience mismatch")
	ErrReservedClaimName = errors.New("jwt: claims already contain " + ClaimName)
)

var b64 = base64.RawURLEncoding.Strict()

// header is the JOSE header Signet writes: alg, kid, typ in this order.
func header(alg, kid string) ([]byte, error) {
	return jcs.Marshal(map[string]any{"alg": alg, "kid": kid, "typ": "JWT"})
}

// canonicalClaims turns any claims value into the I-JSON object it
// serializes to.
func canonicalClaims(claims any) (map[string]any, error) {
	raw, err := jcs.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("jwt: claims: %w", err)
	}
	v, err := jcs.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("jwt: claims: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("jwt: claims must be a JSON object")
	}
	return m, nil
}

// classicAlg picks the JWS algorithm for a classical key.
func classicAlg(pub crypto.PublicKey) (string, crypto.Hash, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", crypto.SHA256, nil
		case elliptic.P384():
			return "ES384", crypto.SHA384, nil
		}
		return "", 0, fmt.Errorf("%w: ECDSA curve %s", ErrUnsupportedAlg, k.Curve.Params().Name)
	case *rsa.PublicKey:
		return "RS256", crypto.SHA256, nil
	}
	return "", 0, fmt.Errorf("%w: key type %T", ErrUnsupportedAlg, pub)
}

func signClassic(signer crypto.Signer, kid string, payload []byte) (string, error) {
	if signer == nil {
		return "", errors.New("jwt: nil classical signer")
	}
	alg, hash, err := classicAlg(signer.Public())
	if err != nil {
		return "", err
	}
	hdr, err := header(alg, kid)
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString(hdr) + "." + b64.EncodeToString(payload)
	h := hash.New()
	h.Write([]byte(input))
	sig, err := signer.Sign(nil, h.Sum(nil), hash)
	if err != nil {
		return "", fmt.Errorf("jwt: classical signature: %w", err)
	}
	if ec, ok := signer.Public().(*ecdsa.PublicKey); ok {
		if sig, err = ecdsaRaw(sig, (ec.Curve.Params().BitSize+7)/8); err != nil {
			return "", err
		}
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// ecdsaRaw converts an ASN.1 ECDSA signature to the JWS r||s form.
func ecdsaRaw(der []byte, size int) ([]byte, error) {
	var rs struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &rs)
	if err != nil || len(rest) != 0 || rs.R == nil || rs.S == nil {
		return nil, errors.New("jwt: signer returned a malformed ECDSA signature")
	}
	out := make([]byte, 2*size)
	if rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > 8*size || rs.S.BitLen() > 8*size {
		return nil, errors.New("jwt: signer returned an out-of-range ECDSA signature")
	}
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out, nil
}

// SignClassic issues a classical JWT (ES256 for a P-256 key).
func SignClassic(claims any, signer crypto.Signer, kid string) (string, error) {
	m, err := canonicalClaims(claims)
	if err != nil {
		return "", err
	}
	payload, err := jcs.Marshal(m)
	if err != nil {
		return "", err
	}
	return signClassic(signer, kid, payload)
}

// SignHybrid issues a hybrid JWT: a classical JWS (ES256 for a P-256 key,
// header alg/kid/typ only) whose payload is the claims plus the ClaimName
// claim {"alg": "ML-DSA-44", "kid": pqKID, "sig": base64url(ML-DSA
// signature over the RFC 8785 canonical JSON of the claims)}. The payload
// itself is written in canonical form.
func SignHybrid(claims any, classic crypto.Signer, classicKID string, pq crypto.Signer, pqKID string) (string, error) {
	m, err := canonicalClaims(claims)
	if err != nil {
		return "", err
	}
	if _, ok := m[ClaimName]; ok {
		return "", ErrReservedClaimName
	}
	pqPub, err := mldsa.SignerPublicKey(pq)
	if err != nil {
		return "", fmt.Errorf("jwt: %w", err)
	}
	canon, err := jcs.Marshal(m)
	if err != nil {
		return "", err
	}
	sig, err := mldsa.Sign(pq, canon)
	if err != nil {
		return "", fmt.Errorf("jwt: %w", err)
	}
	m[ClaimName] = map[string]any{"alg": pqPub.Algorithm().String(), "kid": pqKID, "sig": b64.EncodeToString(sig)}
	payload, err := jcs.Marshal(m)
	if err != nil {
		return "", err
	}
	return signClassic(classic, classicKID, payload)
}

// SignPQ issues a pure ML-DSA JWT (RFC 9964): header {"alg":"ML-DSA-44",
// "kid", "typ":"JWT"}, signature = ML-DSA (empty context) over the ASCII
// signing input.
func SignPQ(claims any, pq crypto.Signer, kid string) (string, error) {
	m, err := canonicalClaims(claims)
	if err != nil {
		return "", err
	}
	pub, err := mldsa.SignerPublicKey(pq)
	if err != nil {
		return "", fmt.Errorf("jwt: %w", err)
	}
	payload, err := jcs.Marshal(m)
	if err != nil {
		return "", err
	}
	hdr, err := header(pub.Algorithm().String(), kid)
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString(hdr) + "." + b64.EncodeToString(payload)
	sig, err := mldsa.Sign(pq, []byte(input))
	if err != nil {
		return "", fmt.Errorf("jwt: %w", err)
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// hashFor returns the hash of a classical JWS algorithm.
func hashFor(alg string) (crypto.Hash, bool) {
	switch alg {
	case "ES256", "RS256":
		return crypto.SHA256, true
	case "ES384":
		return crypto.SHA384, true
	}
	return 0, false
}

func verifyClassic(alg string, pub crypto.PublicKey, input string, sig []byte) error {
	hash, ok := hashFor(alg)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnsupportedAlg, alg)
	}
	var digest []byte
	switch hash {
	case crypto.SHA256:
		d := sha256.Sum256([]byte(input))
		digest = d[:]
	case crypto.SHA384:
		d := sha512.Sum384([]byte(input))
		digest = d[:]
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		var size int
		switch {
		case alg == "ES256" && k.Curve == elliptic.P256():
			size = 32
		case alg == "ES384" && k.Curve == elliptic.P384():
			size = 48
		default:
			return fmt.Errorf("%w: %s with an ECDSA %s key", ErrClassicSignature, alg, k.Curve.Params().Name)
		}
		if len(sig) != 2*size {
			return ErrClassicSignature
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(k, digest, r, s) {
			return ErrClassicSignature
		}
		return nil
	case *rsa.PublicKey:
		if alg != "RS256" {
			return fmt.Errorf("%w: %s with an RSA key", ErrClassicSignature, alg)
		}
		if err := rsa.VerifyPKCS1v15(k, hash, digest, sig); err != nil {
			return ErrClassicSignature
		}
		return nil
	}
	return fmt.Errorf("%w: key type %T", ErrUnsupportedAlg, pub)
}

// splitToken splits a compact JWS into its decoded parts.
func splitToken(token string) (input string, hdr, payload, sig []byte, err error) {
	if len(token) > MaxTokenSize {
		return "", nil, nil, nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxTokenSize)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", nil, nil, nil, fmt.Errorf("%w: want 3 parts, got %d", ErrMalformed, len(parts))
	}
	if hdr, err = b64.DecodeString(parts[0]); err != nil {
		return "", nil, nil, nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if payload, err = b64.DecodeString(parts[1]); err != nil {
		return "", nil, nil, nil, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	if sig, err = b64.DecodeString(parts[2]); err != nil {
		return "", nil, nil, nil, fmt.Errorf("%w: signature: %w", ErrMalformed, err)
	}
	return parts[0] + "." + parts[1], hdr, payload, sig, nil
}
