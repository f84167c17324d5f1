package jwt

import (
	"crypto/sha256"
	"fmt"

	"github.com/signet-id/signet/pq/jcs"
	"github.com/signet-id/signet/pq/mldsa"
)

// JWK is a public "AKP" (Algorithm Key Pair) JSON Web Key of RFC 9964:
// {"kty":"AKP","alg":"ML-DSA-44","pub":"<base64url public key>",...}.
type JWK struct {
	Kty string `json:"kty"`
	Alg string `json:"alg"`
	Pub string `json:"pub"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
}

// NewJWK returns the AKP JWK of pub. use is e.g. "jwt-svid" for a SPIFFE
// bundle, or empty.
func NewJWK(pub *mldsa.PublicKey, kid, use string) JWK {
	return JWK{Kty: "AKP", Alg: pub.Algorithm().String(), Pub: b64.EncodeToString(pub.Bytes()), Kid: kid, Use: use}
}

// MarshalJWK returns the JSON of the AKP JWK of pub.
func MarshalJWK(pub *mldsa.PublicKey, kid, use string) ([]byte, error) {
	return jcs.Marshal(NewJWK(pub, kid, use))
}

// ParseJWK parses a public AKP JWK strictly: kty "AKP", alg ML-DSA-44 or
// ML-DSA-65, pub of the right size, no "priv" (private key material).
// Members it does not know are ignored, as RFC 7517 §4 asks.
func ParseJWK(data []byte) (*mldsa.PublicKey, JWK, error) {
	v, err := jcs.Parse(data)
	if err != nil {
		return nil, JWK{}, fmt.Errorf("%w: JWK: %w", ErrMalformed, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, JWK{}, fmt.Errorf("%w: JWK is not an object", ErrMalformed)
	}
	return jwkFromMap(m)
}

func jwkFromMap(m map[string]any) (*mldsa.PublicKey, JWK, error) {
	str := func(k string) (string, error) {
		v, ok := m[k]
		if !ok {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%w: JWK %q is not a string", ErrMalformed, k)
		}
		return s, nil
	}
	var j JWK
	for k, dst := range map[string]*string{"kty": &j.Kty, "alg": &j.Alg, "pub": &j.Pub, "kid": &j.Kid, "use": &j.Use} {
		s, err := str(k)
		if err != nil {
			return nil, JWK{}, err
		}
		*dst = s
	}
	if _, ok := m["priv"]; ok {
		return nil, JWK{}, fmt.Errorf("%w: JWK holds private key material", ErrMalformed)
	}
	pub, err := j.PublicKey()
	if err != nil {
		return nil, JWK{}, err
	}
	return pub, j, nil
}

// PublicKey decodes the key of an AKP JWK.
func (j JWK) PublicKey() (*mldsa.PublicKey, error) {
	if j.Kty != "AKP" {
		return nil, fmt.Errorf("%w: JWK kty %q, want AKP", ErrMalformed, j.Kty)
	}
	alg, ok := mldsa.AlgorithmFromName(j.Alg)
	if !ok {
		return nil, fmt.Errorf("%w: JWK alg %q", ErrUnsupportedAlg, j.Alg)
	}
	raw, err := b64.DecodeString(j.Pub)
	if err != nil {
		return nil, fmt.Errorf("%w: JWK pub: %w", ErrMalformed, err)
	}
	pub, err := mldsa.NewPublicKey(alg, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: JWK pub: %w", ErrMalformed, err)
	}
	return pub, nil
}

// Thumbprint returns the RFC 7638 thumbprint of pub's AKP JWK: base64url of
// SHA-256 over {"alg":...,"kty":"AKP","pub":...} (the required members,
// sorted, no whitespace). It makes a good kid.
func Thumbprint(pub *mldsa.PublicKey) string {
	j, _ := jcs.Marshal(map[string]any{"alg": pub.Algorithm().String(), "kty": "AKP", "pub": b64.EncodeToString(pub.Bytes())})
	sum := sha256.Sum256(j)
	return b64.EncodeToString(sum[:])
}

// ParseJWKSet parses a JWK Set ({"keys":[...]}) of AKP keys into a map by
// kid; keys without kid are an error. Use it on the ML-DSA member of a
// Signet bundle.
func ParseJWKSet(data []byte) (map[string]*mldsa.PublicKey, error) {
	v, err := jcs.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: JWK set: %w", ErrMalformed, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: JWK set is not an object", ErrMalformed)
	}
	arr, ok := m["keys"].([]any)
	if !ok {
		return nil, fmt.Errorf("%w: JWK set has no keys array", ErrMalformed)
	}
	out := make(map[string]*mldsa.PublicKey, len(arr))
	for i, e := range arr {
		km, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: key %d is not an object", ErrMalformed, i)
		}
		pub, j, err := jwkFromMap(km)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if j.Kid == "" {
			return nil, fmt.Errorf("%w: key %d has no kid", ErrMalformed, i)
		}
		if _, dup := out[j.Kid]; dup {
			return nil, fmt.Errorf("%w: duplicate kid %q", ErrMalformed, j.Kid)
		}
		out[j.Kid] = pub
	}
	return out, nil
}
