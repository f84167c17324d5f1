// Package bundle is Signet's one codec for trust bundles: SPIFFE bundle
// JSON (Marshal, Parse) and the SPIRE API's Bundle message (ToProto,
// FromProto), both to and from go-spiffe's spiffebundle.Bundle, with the
// refresh hint and sequence number carried through every form.
//
// Current go-spiffe rejects a whole bundle with an unknown key type inside
// "keys", so Signet publishes ML-DSA keys (AKP JWKs, RFC 9964) in an extra
// top-level member, MemberName, which SPIFFE clients ignore; this package
// owns that extension.
package bundle

import (
	"bytes"
	"cmp"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	pqjwt "github.com/signet-id/signet/pq/jwt"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/purecert"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MemberName is the top-level bundle member holding ML-DSA keys.
const MemberName = "signet_mldsa_keys"

// Limits on a bundle document read by Parse and ParseSPIFFE.
const (
	// MaxSize is the largest bundle document accepted, in bytes (gRPC's
	// default message limit: a bundle must fit one message anyway).
	MaxSize = 4 << 20
	// MaxKeys is the largest number of keys ("keys" and MemberName
	// together) accepted in one bundle.
	MaxKeys = 1024
)

// Errors returned by Parse and ParseSPIFFE for documents over the limits.
var (
	ErrTooLarge    = errors.New("bundle: document larger than the size limit")
	ErrTooManyKeys = errors.New("bundle: more keys than the key limit")
)

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

// Marshal encodes b as SPIFFE bundle JSON in a stable form: "keys" holds
// the X.509 authorities in bundle order, then the other keys by use and key
// ID; the MemberName member (present when there are ML-DSA keys) holds pure
// ML-DSA X.509 authorities (as "x509-svid" AKP keys with x5c) and then the
// ML-DSA JWT keys by key ID. The document is indented with four spaces and
// ends in a newline.
func Marshal(b *spiffebundle.Bundle, keys map[string]*mldsa.PublicKey) ([]byte, error) {
	var pqRoots []*x509.Certificate
	c := b.Clone()
	for _, a := range c.X509Authorities() {
		if purecert.IsPure(a) {
			pqRoots = append(pqRoots, a)
			c.RemoveX509Authority(a)
		}
	}
	base, err := c.Marshal()
	if err != nil {
		return nil, fmt.Errorf("bundle: marshal %s: %w", b.TrustDomain(), err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(base, &doc); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if raw, ok := doc["keys"]; ok {
		if doc["keys"], err = sortKeys(raw); err != nil {
			return nil, err
		}
	}
	if len(keys) > 0 || len(pqRoots) > 0 {
		raw, err := marshalMember(pqRoots, keys)
		if err != nil {
			return nil, err
		}
		doc[MemberName] = raw
	}
	flat, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, flat, "", "    "); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// sortKeys orders a "keys" array: x509-svid keys first, in their order,
// then the others by use and key ID.
func sortKeys(raw json.RawMessage) (json.RawMessage, error) {
	var keys []json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if keys == nil {
		return raw, nil // "keys": null stays null: go-spiffe reads it as no authorities
	}
	type key struct {
		raw      json.RawMessage
		use, kid string
	}
	ks := make([]key, len(keys))
	for i, raw := range keys {
		var h struct {
			Use string `json:"use"`
			Kid string `json:"kid"`
		}
		if err := json.Unmarshal(raw, &h); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		ks[i] = key{raw: raw, use: h.Use, kid: h.Kid}
	}
	const x509Use = "x509-svid"
	slices.SortStableFunc(ks, func(a, b key) int {
		ax, bx := a.use == x509Use, b.use == x509Use
		switch {
		case ax && bx:
			return 0
		case ax:
			return -1
		case bx:
			return 1
		}
		return cmp.Or(cmp.Compare(a.use, b.use), cmp.Compare(a.kid, b.kid))
	})
	sorted := make([]json.RawMessage, len(ks))
	for i, k := range ks {
		sorted[i] = k.raw
	}
	out, err := json.Marshal(sorted)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return out, nil
}

// marshalMember encodes the MemberName array.
func marshalMember(pqRoots []*x509.Certificate, keys map[string]*mldsa.PublicKey) (json.RawMessage, error) {
	kids := make([]string, 0, len(keys))
	for kid := range keys {
		kids = append(kids, kid)
	}
	sort.Strings(kids)
	jwks := make([]jwk, 0, len(kids)+len(pqRoots))
	for _, c := range pqRoots {
		pub, err := mldsa.ParsePKIXPublicKey(c.RawSubjectPublicKeyInfo)
		if err != nil {
			return nil, fmt.Errorf("bundle: X.509 authority: %w", err)
		}
		jwks = append(jwks, jwk{JWK: pqjwt.NewJWK(pub, "", "x509-svid"), X5c: []string{base64.StdEncoding.EncodeToString(c.Raw)}})
	}
	for _, kid := range kids {
		jwks = append(jwks, jwk{JWK: pqjwt.NewJWK(keys[kid], kid, "jwt-svid")})
	}
	raw, err := json.Marshal(jwks)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return raw, nil
}

// checkLimits refuses a document over MaxSize or with more than MaxKeys
// keys, before the keys are decoded.
func checkLimits(data []byte) (map[string]json.RawMessage, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w (%d bytes, limit %d)", ErrTooLarge, len(data), MaxSize)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	n := 0
	for _, member := range []string{"keys", MemberName} {
		raw, ok := doc[member]
		if !ok {
			continue
		}
		var keys []json.RawMessage
		if err := json.Unmarshal(raw, &keys); err != nil {
			return nil, fmt.Errorf("bundle: %s: %w", member, err)
		}
		n += len(keys)
	}
	if n > MaxKeys {
		return nil, fmt.Errorf("%w (%d keys, limit %d)", ErrTooManyKeys, n, MaxKeys)
	}
	return doc, nil
}

// ParseSPIFFE decodes SPIFFE bundle JSON for td as a SPIFFE client reads
// it: the "keys" member only (MemberName is ignored), within the limits.
func ParseSPIFFE(td spiffeid.TrustDomain, data []byte) (*spiffebundle.Bundle, error) {
	if _, err := checkLimits(data); err != nil {
		return nil, err
	}
	b, err := spiffebundle.Parse(td, data)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return b, nil
}

// Parse decodes SPIFFE bundle JSON for td, with the ML-DSA keys and pure
// ML-DSA X.509 authorities of MemberName, within the limits.
func Parse(td spiffeid.TrustDomain, data []byte) (*Bundle, error) {
	doc, err := checkLimits(data)
	if err != nil {
		return nil, err
	}
	b, err := spiffebundle.Parse(td, data)
	if err != nil {
		// A pure pq bundle has every authority in MemberName, which
		// go-spiffe counts as no authorities at all.
		if _, ok := doc[MemberName]; !ok {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		b, err = parseHeader(td, data)
		if err != nil {
			return nil, err
		}
	}
	out := &Bundle{Bundle: b, MLDSAKeys: map[string]*mldsa.PublicKey{}}
	if err := out.parseMember(doc); err != nil {
		return nil, err
	}
	if out.Empty() && len(out.MLDSAKeys) == 0 {
		return nil, fmt.Errorf("bundle: no authorities found (neither keys nor %s hold a key)", MemberName)
	}
	return out, nil
}

// parseHeader reads the refresh hint and sequence number of a document
// whose "keys" go-spiffe refused as empty, so that a pure pq bundle keeps
// them too.
func parseHeader(td spiffeid.TrustDomain, data []byte) (*spiffebundle.Bundle, error) {
	var h struct {
		Keys           []json.RawMessage `json:"keys"`
		SequenceNumber *uint64           `json:"spiffe_sequence"`
		RefreshHint    *int64            `json:"spiffe_refresh_hint"`
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if len(h.Keys) > 0 {
		// go-spiffe refused a key it can read; say so rather than
		// dropping it.
		_, err := spiffebundle.Parse(td, data)
		return nil, fmt.Errorf("bundle: %w", err)
	}
	b := spiffebundle.New(td)
	if h.SequenceNumber != nil {
		b.SetSequenceNumber(*h.SequenceNumber)
	}
	if h.RefreshHint != nil {
		b.SetRefreshHint(secondsToDuration(*h.RefreshHint))
	}
	return b, nil
}

// parseMember adds the authorities and ML-DSA JWT keys of MemberName.
func (out *Bundle) parseMember(doc map[string]json.RawMessage) error {
	raw, ok := doc[MemberName]
	if !ok {
		return nil
	}
	var all []jwk
	if err := json.Unmarshal(raw, &all); err != nil {
		return fmt.Errorf("bundle: %s: %w", MemberName, err)
	}
	var jwtKeys []jwk
	for i, k := range all {
		if k.Use != "x509-svid" {
			jwtKeys = append(jwtKeys, k)
			continue
		}
		if len(k.X5c) != 1 {
			return fmt.Errorf("bundle: %s: key %d: x509-svid key needs exactly one x5c certificate", MemberName, i)
		}
		der, err := base64.StdEncoding.DecodeString(k.X5c[0])
		if err != nil {
			return fmt.Errorf("bundle: %s: key %d: %w", MemberName, i, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("bundle: %s: key %d: %w", MemberName, i, err)
		}
		out.AddX509Authority(c)
	}
	if len(jwtKeys) == 0 {
		return nil
	}
	jwtRaw, err := json.Marshal(jwtKeys)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	set, err := json.Marshal(map[string]json.RawMessage{"keys": jwtRaw})
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	keys, err := pqjwt.ParseJWKSet(set)
	if err != nil {
		return fmt.Errorf("bundle: %s: %w", MemberName, err)
	}
	out.MLDSAKeys = keys
	return nil
}
