package jwt_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/conformance/svidspec"
	"github.com/signet-id/signet/pq/jcs"
	"github.com/signet-id/signet/pq/jwt"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/pqtest"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

var b64 = base64.RawURLEncoding

type fixture struct {
	now     time.Time
	ec      *ecdsa.PrivateKey
	pq      *mldsa.PrivateKey
	pq65    *mldsa.PrivateKey
	keys    jwt.KeySet
	claims  map[string]any
	ecKID   string
	pqKID   string
	pq65KID string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{now: time.Unix(1_800_000_000, 0), ec: pqtest.NewECKey(), pq: pqtest.NewMLDSAKey(mldsa.MLDSA44), pq65: pqtest.NewMLDSAKey(mldsa.MLDSA65)}
	f.ecKID, f.pqKID, f.pq65KID = "ec-1", jwt.Thumbprint(f.pq.PublicKey()), jwt.Thumbprint(f.pq65.PublicKey())
	f.keys = jwt.KeySet{
		Classic: map[string]crypto.PublicKey{f.ecKID: f.ec.Public()},
		PQ:      map[string]*mldsa.PublicKey{f.pqKID: f.pq.PublicKey(), f.pq65KID: f.pq65.PublicKey()},
	}
	f.claims = map[string]any{
		"sub": pqtest.LeafID, "aud": []string{"vault", "db"},
		"exp": f.now.Add(5 * time.Minute).Unix(), "iat": f.now.Unix(),
		"extra": map[string]any{"z": 1.5, "a": "ü\u2028", "n": nil},
	}
	return f
}

func (f *fixture) opts(requirePQ bool) jwt.VerifyOptions {
	return jwt.VerifyOptions{RequirePQ: requirePQ, Now: func() time.Time { return f.now }, Audience: []string{"db"}}
}

func decode(t testing.TB, part string) map[string]any {
	t.Helper()
	raw, err := b64.DecodeString(part)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// resign re-signs header.payload with the ES256 key, as an attacker holding
// (or having broken) the classical key would.
func resign(t testing.TB, f *fixture, header, payload map[string]any) string {
	t.Helper()
	h, err := jcs.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jcs.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	d := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(nil, f.ec, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64.EncodeToString(sig)
}

func TestHybridAcceptedByGoSPIFFEAndSpec(t *testing.T) {
	f := newFixture(t)
	f.claims["exp"], f.claims["iat"] = time.Now().Add(5*time.Minute).Unix(), time.Now().Unix()
	tok, err := jwt.SignHybrid(f.claims, f.ec, f.ecKID, f.pq, f.pqKID)
	if err != nil {
		t.Fatal(err)
	}
	hdr := decode(t, strings.Split(tok, ".")[0])
	if len(hdr) != 3 || hdr["alg"] != "ES256" || hdr["kid"] != f.ecKID || hdr["typ"] != "JWT" {
		t.Fatalf("header %v", hdr)
	}
	if err := svidspec.CheckJWTSVID(tok); err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString(pqtest.TrustDomain)
	bundle := jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{f.ecKID: f.ec.Public()})
	svid, err := jwtsvid.ParseAndValidate(tok, bundle, []string{"db"})
	if err != nil {
		t.Fatalf("go-spiffe rejected the hybrid JWT-SVID: %v", err)
	}
	if svid.ID.String() != pqtest.LeafID {
		t.Fatalf("go-spiffe saw %s", svid.ID)
	}
	if _, ok := svid.Claims[jwt.ClaimName]; !ok {
		t.Fatal("go-spiffe does not expose the ML-DSA claim")
	}
}

func TestPureRejectedByGoSPIFFE(t *testing.T) {
	f := newFixture(t)
	f.claims["exp"], f.claims["iat"] = time.Now().Add(5*time.Minute).Unix(), time.Now().Unix()
	tok, err := jwt.SignPQ(f.claims, f.pq, f.pqKID)
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString(pqtest.TrustDomain)
	bundle := jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{f.pqKID: f.pq.PublicKey()})
	if _, err := jwtsvid.ParseAndValidate(tok, bundle, []string{"db"}); err == nil {
		t.Fatal("go-spiffe v2.9.0 unexpectedly accepts ML-DSA JWTs; update docs/pq-formats.md")
	} else {
		t.Logf("go-spiffe v2.9.0 on an ML-DSA-44 JWT: %v", err)
	}
}

func TestVerifyProfiles(t *testing.T) {
	f := newFixture(t)
	hybrid, err := jwt.SignHybrid(f.claims, f.ec, f.ecKID, f.pq, f.pqKID)
	if err != nil {
		t.Fatal(err)
	}
	pure44, err := jwt.SignPQ(f.claims, f.pq, f.pqKID)
	if err != nil {
		t.Fatal(err)
	}
	pure65, err := jwt.SignPQ(f.claims, f.pq65, f.pq65KID)
	if err != nil {
		t.Fatal(err)
	}
	classic, err := jwt.SignClassic(f.claims, f.ec, f.ecKID)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		token     string
		requirePQ bool
		profile   jwt.Profile
		pq        bool
	}{
		{"hybrid", hybrid, false, jwt.Hybrid, true},
		{"hybrid require pq", hybrid, true, jwt.Hybrid, true},
		{"pure 44", pure44, true, jwt.PQ, true},
		{"pure 65", pure65, true, jwt.PQ, true},
		{"classic", classic, false, jwt.Classic, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := f.opts(tt.requirePQ)
			// The key set publishes ML-DSA keys: a classic token needs the opt-out.
			opts.AllowClassical = !tt.pq
			tok, err := jwt.Verify(tt.token, f.keys, opts)
			if err != nil {
				t.Fatal(err)
			}
			if tok.Profile != tt.profile || tok.PQVerified != tt.pq {
				t.Fatalf("profile %v pq %v", tok.Profile, tok.PQVerified)
			}
			if tok.Subject != pqtest.LeafID || len(tok.Audience) != 2 || !tok.Expiry.Equal(f.now.Add(5*time.Minute)) {
				t.Fatalf("claims %v %v %v", tok.Subject, tok.Audience, tok.Expiry)
			}
		})
	}
	// The hybrid token verifies without the ML-DSA key when PQ is not required.
	classicOnly := jwt.KeySet{Classic: f.keys.Classic}
	tok, err := jwt.Verify(hybrid, classicOnly, f.opts(false))
	if err != nil || tok.PQVerified {
		t.Fatalf("hybrid with classic keys only: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	f := newFixture(t)
	hybrid, err := jwt.SignHybrid(f.claims, f.ec, f.ecKID, f.pq, f.pqKID)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(hybrid, ".")
	hdr, payload := decode(t, parts[0]), decode(t, parts[1])

	// ML-DSA claim stripped, re-signed with the classical key.
	stripped := map[string]any{}
	for k, v := range payload {
		if k != jwt.ClaimName {
			stripped[k] = v
		}
	}
	// Another subject, ML-DSA claim kept, re-signed with the classical key.
	forged := map[string]any{}
	for k, v := range payload {
		forged[k] = v
	}
	forged["sub"] = "spiffe://example.org/admin"
	// ML-DSA signature altered.
	altered := clone(payload)
	pc := altered[jwt.ClaimName].(map[string]any)
	sig, _ := b64.DecodeString(pc["sig"].(string))
	sig[7] ^= 1
	pc["sig"] = b64.EncodeToString(sig)
	// ML-DSA claim naming the 65 key.
	wrongAlg := clone(payload)
	wrongAlg[jwt.ClaimName].(map[string]any)["kid"] = f.pq65KID
	unknownPQ := clone(payload)
	unknownPQ[jwt.ClaimName].(map[string]any)["kid"] = "nope"
	badClaim := clone(payload)
	badClaim[jwt.ClaimName] = map[string]any{"alg": "ML-DSA-44", "kid": f.pqKID, "sig": "***"}
	extraHdr := map[string]any{"alg": "ES256", "kid": f.ecKID, "typ": "JWT", "x5t": "a"}
	noSub := clone(payload)
	delete(noSub, "sub")

	brokenClassic := parts[0] + "." + parts[1] + "." + flip(parts[2])

	pure, err := jwt.SignPQ(f.claims, f.pq, f.pqKID)
	if err != nil {
		t.Fatal(err)
	}
	pp := strings.Split(pure, ".")
	pureTampered := pp[0] + "." + pp[1] + "." + flip(pp[2])
	pureWrongKey, err := jwt.SignPQ(f.claims, pqtest.NewMLDSAKey(mldsa.MLDSA44), f.pqKID)
	if err != nil {
		t.Fatal(err)
	}
	pureHdr65 := map[string]any{"alg": "ML-DSA-65", "kid": f.pqKID, "typ": "JWT"}
	h65, _ := jcs.Marshal(pureHdr65)
	pureAlgMismatch := b64.EncodeToString(h65) + "." + pp[1] + "." + pp[2]
	dupPayload := `{"sub":"a","sub":"b","aud":"db","exp":1900000000}`
	dupToken := parts[0] + "." + b64.EncodeToString([]byte(dupPayload)) + "." + parts[2]

	tests := []struct {
		name      string
		token     string
		requirePQ bool
		now       time.Time
		want      error
	}{
		{"stripped, require pq", resign(t, f, hdr, stripped), true, f.now, jwt.ErrPQRequired},
		{"other claims changed, classical re-signed", resign(t, f, hdr, forged), false, f.now, jwt.ErrPQSignature},
		{"ML-DSA signature altered", resign(t, f, hdr, altered), false, f.now, jwt.ErrPQSignature},
		{"ML-DSA claim names other-algorithm key", resign(t, f, hdr, wrongAlg), false, f.now, jwt.ErrPQSignature},
		{"ML-DSA key unknown, require pq", resign(t, f, hdr, unknownPQ), true, f.now, jwt.ErrUnknownKey},
		{"ML-DSA claim malformed", resign(t, f, hdr, badClaim), false, f.now, jwt.ErrMalformed},
		{"classical signature broken", brokenClassic, false, f.now, jwt.ErrClassicSignature},
		{"extra header parameter", resign(t, f, extraHdr, payload), false, f.now, jwt.ErrMalformed},
		{"missing sub", resign(t, f, hdr, noSub), false, f.now, jwt.ErrMissingClaim},
		{"expired", hybrid, true, f.now.Add(time.Hour), jwt.ErrExpired},
		{"duplicate claim", dupToken, false, f.now, jwt.ErrMalformed},
		{"pure tampered", pureTampered, false, f.now, jwt.ErrPQSignature},
		{"pure signed by another key", pureWrongKey, false, f.now, jwt.ErrPQSignature},
		{"pure header alg mismatch", pureAlgMismatch, false, f.now, jwt.ErrPQSignature},
		{"classic, require pq", resign(t, f, hdr, stripped), true, f.now, jwt.ErrPQRequired},
		{"claim stripped, PQ key set (downgrade)", resign(t, f, hdr, stripped), false, f.now, jwt.ErrDowngrade},
		{"unknown ML-DSA key, PQ key set (downgrade)", resign(t, f, hdr, unknownPQ), false, f.now, jwt.ErrDowngrade},
		{"not a JWT", "a.b", false, f.now, jwt.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := f.opts(tt.requirePQ)
			opts.Now = func() time.Time { return tt.now }
			_, err := jwt.Verify(tt.token, f.keys, opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	// With the explicit opt-out, classical verification stands.
	allow := f.opts(false)
	allow.AllowClassical = true
	for name, tok := range map[string]string{"unknown ML-DSA key": resign(t, f, hdr, unknownPQ), "claim stripped": resign(t, f, hdr, stripped)} {
		if tok, err := jwt.Verify(tok, f.keys, allow); err != nil || tok.PQVerified {
			t.Fatalf("%s with AllowClassical: %v", name, err)
		}
	}
	// Audience.
	opts := f.opts(false)
	opts.Audience = []string{"other"}
	if _, err := jwt.Verify(hybrid, f.keys, opts); !errors.Is(err, jwt.ErrAudience) {
		t.Fatalf("audience: %v", err)
	}
}

func clone(m map[string]any) map[string]any {
	raw, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

func flip(sigPart string) string {
	raw, _ := b64.DecodeString(sigPart)
	raw[3] ^= 1
	return b64.EncodeToString(raw)
}

func TestSignRejectsReservedClaim(t *testing.T) {
	f := newFixture(t)
	f.claims[jwt.ClaimName] = "x"
	if _, err := jwt.SignHybrid(f.claims, f.ec, f.ecKID, f.pq, f.pqKID); !errors.Is(err, jwt.ErrReservedClaimName) {
		t.Fatal(err)
	}
	delete(f.claims, jwt.ClaimName)
	if _, err := jwt.SignHybrid(f.claims, f.ec, f.ecKID, f.ec, f.pqKID); err == nil {
		t.Fatal("ECDSA key accepted as ML-DSA signer")
	}
}

func TestJWK(t *testing.T) {
	f := newFixture(t)
	for _, k := range []*mldsa.PrivateKey{f.pq, f.pq65} {
		raw, err := jwt.MarshalJWK(k.PublicKey(), "kid-1", "jwt-svid")
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		if m["kty"] != "AKP" || m["alg"] != k.Algorithm().String() || m["use"] != "jwt-svid" {
			t.Fatalf("JWK %s", raw)
		}
		pub, j, err := jwt.ParseJWK(raw)
		if err != nil || !pub.Equal(k.PublicKey()) || j.Kid != "kid-1" {
			t.Fatalf("ParseJWK: %v", err)
		}
		// Thumbprint per RFC 7638 over the required members.
		want := sha256.Sum256([]byte(`{"alg":"` + k.Algorithm().String() + `","kty":"AKP","pub":"` + b64.EncodeToString(k.PublicKey().Bytes()) + `"}`))
		if jwt.Thumbprint(k.PublicKey()) != b64.EncodeToString(want[:]) {
			t.Fatal("thumbprint")
		}
	}
	pubB64 := b64.EncodeToString(f.pq.PublicKey().Bytes())
	for name, in := range map[string]string{
		"wrong kty":   `{"kty":"OKP","alg":"ML-DSA-44","pub":"` + pubB64 + `"}`,
		"wrong alg":   `{"kty":"AKP","alg":"ML-DSA-87","pub":"` + pubB64 + `"}`,
		"size of 65":  `{"kty":"AKP","alg":"ML-DSA-65","pub":"` + pubB64 + `"}`,
		"private key": `{"kty":"AKP","alg":"ML-DSA-44","pub":"` + pubB64 + `","priv":"AAAA"}`,
		"padded pub":  `{"kty":"AKP","alg":"ML-DSA-44","pub":"` + pubB64 + `=="}`,
		"not object":  `[]`,
	} {
		if _, _, err := jwt.ParseJWK([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	set := `{"keys":[` + `{"kty":"AKP","alg":"ML-DSA-44","kid":"a","pub":"` + pubB64 + `"}]}`
	keys, err := jwt.ParseJWKSet([]byte(set))
	if err != nil || !keys["a"].Equal(f.pq.PublicKey()) {
		t.Fatalf("ParseJWKSet: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	fx := newFixture(f)
	h, _ := jwt.SignHybrid(fx.claims, fx.ec, fx.ecKID, fx.pq, fx.pqKID)
	p, _ := jwt.SignPQ(fx.claims, fx.pq, fx.pqKID)
	c, _ := jwt.SignClassic(fx.claims, fx.ec, fx.ecKID)
	f.Add(h)
	f.Add(p)
	f.Add(c) // small seeds too, so that mutations are cheap
	f.Add("e30.e30.")
	f.Add(b64.EncodeToString([]byte(`{"alg":"ES256","kid":"ec-1"}`)) + "." + b64.EncodeToString([]byte(`{"sub":"spiffe://example.org/w","aud":"db","exp":1e10,"signet_mldsa":{"alg":"ML-DSA-44","kid":"k","sig":"AAAA"}}`)) + ".AAAA")
	f.Add(b64.EncodeToString([]byte(`{"alg":"ML-DSA-44","kid":"k","typ":"JWT"}`)) + "." + b64.EncodeToString([]byte(`{"sub":"s","aud":["a"],"exp":1,"nbf":0.5}`)) + ".")
	f.Fuzz(func(t *testing.T, token string) {
		tok, err := jwt.Parse(token)
		if err != nil {
			return
		}
		if tok.Subject == "" || len(tok.Audience) == 0 || tok.KeyID == "" {
			t.Fatalf("Parse accepted a token without sub/aud/kid: %q", token)
		}
		if _, err := jwt.Verify(token, fx.keys, fx.opts(true)); err == nil && token != h && token != p {
			t.Fatalf("Verify accepted a fuzzed token: %q", token)
		}
		if _, err := jwt.Verify(token, fx.keys, fx.opts(false)); err == nil && token != h && token != p {
			t.Fatalf("Verify (default policy) accepted a fuzzed token: %q", token)
		}
	})
}

func FuzzParseJWK(f *testing.F) {
	fx := newFixture(f)
	raw, _ := jwt.MarshalJWK(fx.pq.PublicKey(), "k", "jwt-svid")
	f.Add(raw)
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, j, err := jwt.ParseJWK(data)
		if err != nil {
			return
		}
		again, err := jwt.MarshalJWK(pub, j.Kid, j.Use)
		if err != nil {
			t.Fatal(err)
		}
		if pub2, _, err := jwt.ParseJWK(again); err != nil || !pub2.Equal(pub) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzParseJWKSet fuzzes the ML-DSA JWK sets read from bundles.
func FuzzParseJWKSet(f *testing.F) {
	fx := newFixture(f)
	raw, _ := jwt.MarshalJWK(fx.pq.PublicKey(), "k", "jwt-svid")
	f.Add([]byte(`{"keys":[` + string(raw) + `]}`))
	f.Add([]byte(`{"keys":[{"kty":"AKP","alg":"ML-DSA-44","kid":"a","pub":"AAAA"},{"kty":"EC"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := jwt.ParseJWKSet(data)
		if err != nil {
			return
		}
		for kid, k := range keys {
			if k == nil || kid == "" {
				t.Fatalf("key %q: %v", kid, k)
			}
		}
	})
}
