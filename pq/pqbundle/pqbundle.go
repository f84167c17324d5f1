// Package pqbundle reads and writes SPIFFE bundles that also publish ML-DSA
// JWT keys. Current go-spiffe rejects a whole bundle with an unknown key
// type inside "keys", so Signet publishes ML-DSA keys (AKP JWKs, RFC 9964)
// in an extra top-level member, MemberName, which SPIFFE clients ignore.
package pqbundle

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"

	pqjwt "github.com/signet-id/signet/pq/jwt"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/purecert"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MemberName is the top-level bundle member holding ML-DSA JWT keys.
const MemberName = "signet_mldsa_keys"

// Bundle is a SPIFFE bundle plus its ML-DSA JWT keys.
type Bundle struct {
	*spiffebundle.Bundle
	MLDSAKeys map[string]*mldsa.PublicKey
}

// jwk is an AKP JWK as published in MemberName; X.509 authorities with
// ML-DSA keys (pure pq chains) carry use "x509-svid" and their certificate.
type jwk struct {
	pqjwt.JWK
	X5c []string `json:"x5c,omitempty"`
}

// Marshal encodes b as SPIFFE bundle JSON with the MemberName member (when
// there are ML-DSA keys), keys sorted by key ID. Pure ML-DSA X.509
// authorities move to MemberName too, as "x509-svid" AKP keys with x5c.
func Marshal(b *spiffebundle.Bundle, keys map[string]*mldsa.PublicKey) ([]byte, error) {
	var pqRoots []*x509.Certificate
	c := b.Clone()
	for _, a := range c.X509Authorities() {
		if purecert.IsPure(a) {
			pqRoots = append(pqRoots, a)
			c.RemoveX509Authority(a)
		}
	}
	b = c
	base, err := b.Marshal()
	if err != nil {
		return nil, fmt.Errorf("pqbundle: %w", err)
	}
	if len(keys) == 0 && len(pqRoots) == 0 {
		return base, nil
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(base, &doc); err != nil {
		return nil, fmt.Errorf("pqbundle: %w", err)
	}
	kids := make([]string, 0, len(keys))
	for kid := range keys {
		kids = append(kids, kid)
	}
	sort.Strings(kids)
	jwks := make([]jwk, 0, len(kids)+len(pqRoots))
	for _, c := range pqRoots {
		pub, err := mldsa.ParsePKIXPublicKey(c.RawSubjectPublicKeyInfo)
		if err != nil {
			return nil, fmt.Errorf("pqbundle: X.509 authority: %w", err)
		}
		jwks = append(jwks, jwk{JWK: pqjwt.NewJWK(pub, "", "x509-svid"), X5c: []string{base64.StdEncoding.EncodeToString(c.Raw)}})
	}
	for _, kid := range kids {
		jwks = append(jwks, jwk{JWK: pqjwt.NewJWK(keys[kid], kid, "jwt-svid")})
	}
	raw, err := json.Marshal(jwks)
	if err != nil {
		return nil, fmt.Errorf("pqbundle: %w", err)
	}
	doc[MemberName] = raw
	return json.MarshalIndent(doc, "", "    ")
}

// Parse decodes SPIFFE bundle JSON for td, with optional ML-DSA keys.
func Parse(td spiffeid.TrustDomain, data []byte) (*Bundle, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("pqbundle: %w", err)
	}
	b, err := spiffebundle.Parse(td, data)
	if err != nil {
		// A pure pq bundle has every authority in MemberName, which
		// go-spiffe counts as no authorities at all.
		if _, ok := doc[MemberName]; !ok {
			return nil, fmt.Errorf("pqbundle: %w", err)
		}
		b = spiffebundle.New(td)
	}
	out := &Bundle{Bundle: b, MLDSAKeys: map[string]*mldsa.PublicKey{}}
	if err := out.parseMember(doc); err != nil {
		return nil, err
	}
	if out.Empty() && len(out.MLDSAKeys) == 0 {
		return nil, fmt.Errorf("pqbundle: no authorities found (neither keys nor %s hold a key)", MemberName)
	}
	return out, nil
}

// parseMember adds the authorities and ML-DSA JWT keys of MemberName.
func (out *Bundle) parseMember(doc map[string]json.RawMessage) error {
	if raw, ok := doc[MemberName]; ok {
		var all []jwk
		if err := json.Unmarshal(raw, &all); err != nil {
			return fmt.Errorf("pqbundle: %s: %w", MemberName, err)
		}
		var jwtKeys []jwk
		for i, k := range all {
			if k.Use != "x509-svid" {
				jwtKeys = append(jwtKeys, k)
				continue
			}
			if len(k.X5c) != 1 {
				return fmt.Errorf("pqbundle: %s: key %d: x509-svid key needs exactly one x5c certificate", MemberName, i)
			}
			der, err := base64.StdEncoding.DecodeString(k.X5c[0])
			if err != nil {
				return fmt.Errorf("pqbundle: %s: key %d: %w", MemberName, i, err)
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return fmt.Errorf("pqbundle: %s: key %d: %w", MemberName, i, err)
			}
			out.AddX509Authority(c)
		}
		jwtRaw, err := json.Marshal(jwtKeys)
		if err != nil {
			return fmt.Errorf("pqbundle: %w", err)
		}
		if len(jwtKeys) == 0 {
			return nil
		}
		set, err := json.Marshal(map[string]json.RawMessage{"keys": jwtRaw})
		if err != nil {
			return fmt.Errorf("pqbundle: %w", err)
		}
		keys, err := pqjwt.ParseJWKSet(set)
		if err != nil {
			return fmt.Errorf("pqbundle: %s: %w", MemberName, err)
		}
		out.MLDSAKeys = keys
	}
	return nil
}
