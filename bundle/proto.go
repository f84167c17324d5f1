package bundle

import (
	"cmp"
	"crypto/x509"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// ToProto converts b to the SPIRE API's Bundle message: X.509 authorities
// in bundle order, JWT authorities by key ID, the refresh hint in whole
// seconds and the sequence number.
func ToProto(b *spiffebundle.Bundle) (*types.Bundle, error) {
	out := &types.Bundle{TrustDomain: b.TrustDomain().Name()}
	for _, c := range b.X509Authorities() {
		out.X509Authorities = append(out.X509Authorities, &types.X509Certificate{Asn1: c.Raw})
	}
	for kid, pub := range b.JWTAuthorities() {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("bundle: marshal JWT key %q: %w", kid, err)
		}
		out.JwtAuthorities = append(out.JwtAuthorities, &types.JWTKey{KeyId: kid, PublicKey: der})
	}
	slices.SortFunc(out.JwtAuthorities, func(a, b *types.JWTKey) int { return cmp.Compare(a.KeyId, b.KeyId) })
	if h, ok := b.RefreshHint(); ok {
		out.RefreshHint = int64(h / time.Second)
	}
	if s, ok := b.SequenceNumber(); ok {
		out.SequenceNumber = s
	}
	return out, nil
}

// FromProto converts a Bundle message to a go-spiffe bundle, refusing an
// invalid trust domain, authority or JWT key (and a JWT key without a key
// ID). A zero refresh hint or sequence number is left unset: proto3 cannot
// tell zero from absent.
func FromProto(p *types.Bundle) (*spiffebundle.Bundle, error) {
	return fromProto(p, nil)
}

// FromProtoSkipping is FromProto, except that a JWT authority whose key Go
// cannot parse (an ML-DSA key, say, which the SPIFFE "keys" array cannot
// carry for current clients) is left out and reported to skipped.
func FromProtoSkipping(p *types.Bundle, skipped func(kid string, err error)) (*spiffebundle.Bundle, error) {
	if skipped == nil {
		skipped = func(string, error) {}
	}
	return fromProto(p, skipped)
}

func fromProto(p *types.Bundle, skipped func(kid string, err error)) (*spiffebundle.Bundle, error) {
	td, err := spiffeid.TrustDomainFromString(p.GetTrustDomain())
	if err != nil {
		return nil, fmt.Errorf("bundle: invalid trust domain %q: %w", p.GetTrustDomain(), err)
	}
	b := spiffebundle.New(td)
	for i, a := range p.GetX509Authorities() {
		c, err := x509.ParseCertificate(a.GetAsn1())
		if err != nil {
			return nil, fmt.Errorf("bundle: invalid X.509 authority %d: %w", i, err)
		}
		b.AddX509Authority(c)
	}
	for i, k := range p.GetJwtAuthorities() {
		if k.GetKeyId() == "" {
			return nil, fmt.Errorf("bundle: invalid JWT authority %d: missing key ID", i)
		}
		pub, err := x509.ParsePKIXPublicKey(k.GetPublicKey())
		if err != nil {
			if skipped != nil {
				skipped(k.GetKeyId(), err)
				continue
			}
			return nil, fmt.Errorf("bundle: invalid JWT authority %q: %w", k.GetKeyId(), err)
		}
		if err := b.AddJWTAuthority(k.GetKeyId(), pub); err != nil {
			return nil, fmt.Errorf("bundle: invalid JWT authority %q: %w", k.GetKeyId(), err)
		}
	}
	if h := p.GetRefreshHint(); h > 0 {
		b.SetRefreshHint(secondsToDuration(h))
	}
	if s := p.GetSequenceNumber(); s > 0 {
		b.SetSequenceNumber(s)
	}
	return b, nil
}

// secondsToDuration converts a refresh hint in seconds, saturating instead
// of overflowing.
func secondsToDuration(s int64) time.Duration {
	const maxSeconds = math.MaxInt64 / int64(time.Second)
	if s > maxSeconds {
		return time.Duration(maxSeconds) * time.Second
	}
	if s < -maxSeconds {
		return -time.Duration(maxSeconds) * time.Second
	}
	return time.Duration(s) * time.Second
}
