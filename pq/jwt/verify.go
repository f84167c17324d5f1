package jwt

import (
	"crypto"
	"fmt"
	"math"
	"time"

	"github.com/signet-id/signet/pq/jcs"
	"github.com/signet-id/signet/pq/mldsa"
)

// Keys resolves verification keys by key ID.
type Keys interface {
	// ClassicKey returns the classical (ECDSA/RSA) JWT key with this ID.
	ClassicKey(kid string) (crypto.PublicKey, bool)
	// PQKey returns the ML-DSA JWT key with this ID.
	PQKey(kid string) (*mldsa.PublicKey, bool)
}

// KeySet is a Keys backed by maps; a bundle's "keys" array feeds Classic,
// its ML-DSA member feeds PQ.
type KeySet struct {
	Classic map[string]crypto.PublicKey
	PQ      map[string]*mldsa.PublicKey
}

var _ Keys = KeySet{}

// PQPublisher is implemented by key sets that can tell whether their trust
// domain publishes ML-DSA JWT keys (a hybrid or pq trust domain). Verify
// then requires a valid ML-DSA signature unless
// VerifyOptions.AllowClassical is set.
type PQPublisher interface {
	PublishesPQ() bool
}

// PublishesPQ implements PQPublisher: the set holds an ML-DSA key.
func (s KeySet) PublishesPQ() bool {
	for _, k := range s.PQ {
		if k != nil {
			return true
		}
	}
	return false
}

// ClassicKey implements Keys.
func (s KeySet) ClassicKey(kid string) (crypto.PublicKey, bool) {
	k, ok := s.Classic[kid]
	return k, ok && k != nil
}

// PQKey implements Keys.
func (s KeySet) PQKey(kid string) (*mldsa.PublicKey, bool) {
	k, ok := s.PQ[kid]
	return k, ok && k != nil
}

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// RequirePQ rejects tokens without a valid ML-DSA signature (classic
	// tokens, and hybrid tokens whose ML-DSA key is unknown).
	RequirePQ bool
	// AllowClassical turns off the downgrade guard: by default, when keys
	// publish ML-DSA keys (PQPublisher), a token without a valid ML-DSA
	// signature fails with ErrDowngrade; with AllowClassical it verifies
	// as a classic token (PQVerified false). Ignored when RequirePQ is set.
	AllowClassical bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Audience, if not empty, must share at least one value with aud.
	Audience []string
}

// Token is a parsed JWT-SVID.
type Token struct {
	Profile  Profile
	Alg      string // header alg
	KeyID    string // header kid
	Type     string // header typ, may be empty
	Claims   map[string]any
	Subject  string
	Audience []string
	Expiry   time.Time
	// PQAlg and PQKeyID describe the ML-DSA signature: the header's for a
	// pq token, the signet_mldsa claim's for a hybrid one.
	PQAlg   string
	PQKeyID string
	// PQVerified reports whether an ML-DSA signature was checked and valid.
	PQVerified bool

	input    string // signing input
	sig      []byte
	pqSig    []byte
	pqSigned []byte // canonical claims the hybrid ML-DSA signature covers
}

// Parse parses a token without verifying anything: signatures, expiry and
// audience are Verify's job. It enforces the JWT-SVID header rules (only
// alg, kid and typ; kid present; typ JWT or JOSE if present) and the
// presence and types of sub, aud and exp.
func Parse(token string) (*Token, error) {
	input, hdrRaw, payloadRaw, sig, err := splitToken(token)
	if err != nil {
		return nil, err
	}
	hv, err := jcs.Parse(hdrRaw)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	hdr, ok := hv.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: header is not an object", ErrMalformed)
	}
	t := &Token{input: input, sig: sig}
	for k, v := range hdr {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%w: header %q is not a string", ErrMalformed, k)
		}
		switch k {
		case "alg":
			t.Alg = s
		case "kid":
			t.KeyID = s
		case "typ":
			if s != "JWT" && s != "JOSE" {
				return nil, fmt.Errorf("%w: typ %q", ErrMalformed, s)
			}
			t.Type = s
		default:
			return nil, fmt.Errorf("%w: header parameter %q not allowed in a JWT-SVID", ErrMalformed, k)
		}
	}
	if t.KeyID == "" {
		return nil, fmt.Errorf("%w: header has no kid", ErrMalformed)
	}
	switch {
	case t.Alg == "":
		return nil, fmt.Errorf("%w: header has no alg", ErrMalformed)
	case isPQAlg(t.Alg):
		t.Profile, t.PQAlg, t.PQKeyID, t.pqSig = PQ, t.Alg, t.KeyID, sig
	default:
		if _, ok := hashFor(t.Alg); !ok {
			return nil, fmt.Errorf("%w: %q", ErrUnsupportedAlg, t.Alg)
		}
		t.Profile = Classic
	}

	pv, err := jcs.Parse(payloadRaw)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	claims, ok := pv.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: payload is not an object", ErrMalformed)
	}
	t.Claims = claims
	if err := t.parseStandardClaims(); err != nil {
		return nil, err
	}
	if c, ok := claims[ClaimName]; ok {
		if t.Profile == PQ {
			return nil, fmt.Errorf("%w: %s claim in a pq token", ErrMalformed, ClaimName)
		}
		if err := t.parsePQClaim(c); err != nil {
			return nil, err
		}
		t.Profile = Hybrid
	}
	return t, nil
}

func isPQAlg(alg string) bool {
	_, ok := mldsa.AlgorithmFromName(alg)
	return ok
}

func (t *Token) parseStandardClaims() error {
	sub, ok := t.Claims["sub"].(string)
	if !ok || sub == "" {
		return fmt.Errorf("%w: sub", ErrMissingClaim)
	}
	t.Subject = sub
	switch aud := t.Claims["aud"].(type) {
	case string:
		t.Audience = []string{aud}
	case []any:
		for _, a := range aud {
			s, ok := a.(string)
			if !ok {
				return fmt.Errorf("%w: aud holds a non-string", ErrMalformed)
			}
			t.Audience = append(t.Audience, s)
		}
	}
	if len(t.Audience) == 0 {
		return fmt.Errorf("%w: aud", ErrMissingClaim)
	}
	exp, ok := t.Claims["exp"].(float64)
	if !ok {
		return fmt.Errorf("%w: exp", ErrMissingClaim)
	}
	t.Expiry = numericDate(exp)
	for _, k := range []string{"nbf", "iat"} {
		if v, ok := t.Claims[k]; ok {
			if _, ok := v.(float64); !ok {
				return fmt.Errorf("%w: %s is not a number", ErrMalformed, k)
			}
		}
	}
	return nil
}

func numericDate(f float64) time.Time {
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}

func (t *Token) parsePQClaim(c any) error {
	obj, ok := c.(map[string]any)
	if !ok {
		return fmt.Errorf("%w: %s is not an object", ErrMalformed, ClaimName)
	}
	if len(obj) != 3 {
		return fmt.Errorf("%w: %s must hold exactly alg, kid and sig", ErrMalformed, ClaimName)
	}
	alg, ok1 := obj["alg"].(string)
	kid, ok2 := obj["kid"].(string)
	sig, ok3 := obj["sig"].(string)
	if !ok1 || !ok2 || !ok3 || !isPQAlg(alg) || kid == "" {
		return fmt.Errorf("%w: %s must hold alg (ML-DSA-44/65), kid and sig strings", ErrMalformed, ClaimName)
	}
	raw, err := b64.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("%w: %s sig: %w", ErrMalformed, ClaimName, err)
	}
	rest := make(map[string]any, len(t.Claims)-1)
	for k, v := range t.Claims {
		if k != ClaimName {
			rest[k] = v
		}
	}
	canon, err := jcs.Marshal(rest)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	t.PQAlg, t.PQKeyID, t.pqSig, t.pqSigned = alg, kid, raw, canon
	return nil
}

// Verify parses token and checks, in order: the classical signature (classic
// and hybrid tokens), the ML-DSA signature (the signet_mldsa claim of a
// hybrid token, or the JWS signature of a pq token), the RequirePQ policy,
// exp/nbf and the audience.
//
// When keys publish ML-DSA keys (PQPublisher) and neither RequirePQ nor
// AllowClassical is set, a token without a valid ML-DSA signature (the
// signet_mldsa claim stripped and the token re-signed classically, or an
// unknown ML-DSA key ID) fails with ErrDowngrade. A hybrid token whose
// ML-DSA key ID is unknown to keys passes as classic when classical tokens
// are allowed (PQVerified false) and fails with ErrUnknownKey under
// RequirePQ; a hybrid token whose ML-DSA key is known must verify either way.
func Verify(token string, keys Keys, opts VerifyOptions) (*Token, error) {
	t, err := Parse(token)
	if err != nil {
		return nil, err
	}
	guard := false
	if p, ok := keys.(PQPublisher); ok && !opts.RequirePQ && !opts.AllowClassical {
		guard = p.PublishesPQ()
	}
	switch t.Profile {
	case Classic, Hybrid:
		pub, ok := keys.ClassicKey(t.KeyID)
		if !ok {
			return nil, fmt.Errorf("%w: classical key %q", ErrUnknownKey, t.KeyID)
		}
		if err := verifyClassic(t.Alg, pub, t.input, t.sig); err != nil {
			return nil, err
		}
		if t.Profile == Hybrid {
			pq, ok := keys.PQKey(t.PQKeyID)
			switch {
			case ok:
				if err := checkPQ(pq, t.PQAlg, t.pqSigned, t.pqSig); err != nil {
					return nil, err
				}
				t.PQVerified = true
			case opts.RequirePQ:
				return nil, fmt.Errorf("%w: ML-DSA key %q", ErrUnknownKey, t.PQKeyID)
			}
		}
	case PQ:
		pq, ok := keys.PQKey(t.KeyID)
		if !ok {
			return nil, fmt.Errorf("%w: ML-DSA key %q", ErrUnknownKey, t.KeyID)
		}
		if err := checkPQ(pq, t.Alg, []byte(t.input), t.sig); err != nil {
			return nil, err
		}
		t.PQVerified = true
	}
	if opts.RequirePQ && !t.PQVerified {
		return nil, ErrPQRequired
	}
	if guard && !t.PQVerified {
		return nil, fmt.Errorf("%w: %s token", ErrDowngrade, t.Profile)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	n := now()
	if !n.Before(t.Expiry) {
		return nil, fmt.Errorf("%w: at %s", ErrExpired, t.Expiry.Format(time.RFC3339))
	}
	if nbf, ok := t.Claims["nbf"].(float64); ok && n.Before(numericDate(nbf)) {
		return nil, ErrNotYetValid
	}
	if len(opts.Audience) > 0 && !intersects(t.Audience, opts.Audience) {
		return nil, fmt.Errorf("%w: token is for %v", ErrAudience, t.Audience)
	}
	return t, nil
}

func checkPQ(pub *mldsa.PublicKey, alg string, msg, sig []byte) error {
	if pub.Algorithm().String() != alg {
		return fmt.Errorf("%w: token says %s, key is %s", ErrPQSignature, alg, pub.Algorithm())
	}
	if !pub.Verify(msg, sig) {
		return ErrPQSignature
	}
	return nil
}

func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}
