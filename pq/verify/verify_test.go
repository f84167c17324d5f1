package verify_test

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/signet-id/signet/pq/altsig"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/pqtest"
	"github.com/signet-id/signet/pq/purecert"
	"github.com/signet-id/signet/pq/verify"
)

// reissue re-signs orig under parent with the classical key only, keeping
// its fields; alt decides which alternative-signature extensions (possibly
// modified) the copy carries; mutate may change the template.
func reissue(t *testing.T, orig, parent *x509.Certificate, key crypto.Signer, alt func([]pkix.Extension) []pkix.Extension, mutate func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	tmpl := *orig
	var exts []pkix.Extension
	for _, e := range orig.Extensions {
		if e.Id.Equal(altsig.OIDSubjectAltPublicKeyInfo) || e.Id.Equal(altsig.OIDAltSignatureAlgorithm) || e.Id.Equal(altsig.OIDAltSignatureValue) {
			exts = append(exts, pkix.Extension{Id: e.Id, Critical: e.Critical, Value: append([]byte(nil), e.Value...)})
		}
	}
	tmpl.ExtraExtensions = alt(exts)
	if mutate != nil {
		mutate(&tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, parent, orig.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func keepAll(e []pkix.Extension) []pkix.Extension { return e }
func dropAll([]pkix.Extension) []pkix.Extension   { return nil }

func flipSig(e []pkix.Extension) []pkix.Extension {
	for i := range e {
		if e[i].Id.Equal(altsig.OIDAltSignatureValue) {
			e[i].Value[len(e[i].Value)/2] ^= 1
		}
	}
	return e
}

func dropKey(e []pkix.Extension) []pkix.Extension {
	var out []pkix.Extension
	for _, x := range e {
		if !x.Id.Equal(altsig.OIDSubjectAltPublicKeyInfo) {
			out = append(out, x)
		}
	}
	return out
}

func TestVerifyX509(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	h, err := pqtest.Hybrid(now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pqtest.Pure(now)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := pqtest.Classic(now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pqtest.Hybrid(now)
	if err != nil {
		t.Fatal(err)
	}
	roots := []*x509.Certificate{h.Root.Cert, p.Root.Cert, cl.Root.Cert}

	// Alternative extensions stripped from the leaf (re-signed classically).
	stripped := reissue(t, h.Leaf.Cert, h.Intermediate.Cert, h.Intermediate.Key, dropAll, nil)
	// Alternative signature altered (classical signature valid).
	altered := reissue(t, h.Leaf.Cert, h.Intermediate.Cert, h.Intermediate.Key, flipSig, nil)
	// Another SPIFFE ID, re-signed with only the ECDSA key, alt extensions copied.
	evil, _ := url.Parse("spiffe://example.org/admin")
	resigned := reissue(t, h.Leaf.Cert, h.Intermediate.Cert, h.Intermediate.Key, keepAll, func(c *x509.Certificate) { c.URIs = []*url.URL{evil} })
	// Intermediate re-issued with the root's ECDSA key and the attacker's own
	// ML-DSA key (it cannot use the root's).
	attacker := pqtest.NewMLDSAKey(mldsa.MLDSA65)
	forgedInterDER, err := altsig.CreateCertificate(rand.Reader, pqtest.CATemplate("intermediate", now, time.Hour), h.Root.Cert, h.Intermediate.Key.Public(), h.Root.Key, attacker, h.Intermediate.AltKey.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	forgedInter, _ := x509.ParseCertificate(forgedInterDER)
	// Leaf whose alternative signature is by a key other than its issuer's.
	wrongAltDER, err := altsig.CreateCertificate(rand.Reader, pqtest.LeafTemplate(pqtest.LeafID, now, time.Hour), h.Intermediate.Cert, h.Leaf.Key.Public(), h.Intermediate.Key, other.Intermediate.AltKey, h.Leaf.AltKey.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	wrongAlt, _ := x509.ParseCertificate(wrongAltDER)
	// Leaf without subjectAltPublicKeyInfo.
	noKey := reissue(t, h.Leaf.Cert, h.Intermediate.Cert, h.Intermediate.Key, dropKey, nil)
	// Pure leaf with a broken signature.
	broken := append([]byte(nil), p.Leaf.Cert.Raw...)
	broken[len(broken)-3] ^= 1
	brokenPure, _ := x509.ParseCertificate(broken)

	classicRoots := []*x509.Certificate{cl.Root.Cert}
	ok := []struct {
		name      string
		chain     []*x509.Certificate
		roots     []*x509.Certificate
		requirePQ bool
		allow     bool // AllowClassical
		profile   verify.Profile
		pq        bool
	}{
		{"hybrid", h.Certs(), roots, true, false, verify.Hybrid, true},
		{"hybrid, default policy", h.Certs(), roots, false, false, verify.Hybrid, true},
		{"pure", p.Certs(), roots, true, false, verify.PQ, true},
		{"pure, default policy", p.Certs(), roots, false, false, verify.PQ, true},
		{"classic, classic roots", cl.Certs(), classicRoots, false, false, verify.Classic, false},
		{"classic, PQ roots, allow classical", cl.Certs(), roots, false, true, verify.Classic, false},
		{"stripped, allow classical", []*x509.Certificate{stripped, h.Intermediate.Cert}, roots, false, true, verify.Hybrid, false},
		{"require pq wins over allow classical", h.Certs(), roots, true, true, verify.Hybrid, true},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			res, err := verify.VerifyX509(tt.chain, tt.roots, verify.Options{RequirePQ: tt.requirePQ, AllowClassical: tt.allow, Now: clock})
			if err != nil {
				t.Fatal(err)
			}
			if res.Profile != tt.profile || res.PQVerified != tt.pq || len(res.Chain) != 3 {
				t.Fatalf("profile %v pq %v chain %d", res.Profile, res.PQVerified, len(res.Chain))
			}
			if res.ID.String() != pqtest.LeafID {
				t.Fatalf("ID %v", res.ID)
			}
		})
	}

	bad := []struct {
		name      string
		chain     []*x509.Certificate
		roots     []*x509.Certificate
		requirePQ bool
		want      []error
		index     int // of the failing certificate, -1 if not a *CertError
	}{
		{"alt extensions stripped", []*x509.Certificate{stripped, h.Intermediate.Cert}, roots, true, []error{verify.ErrAltMissing}, 0},
		{"alt extensions stripped, default policy (downgrade)", []*x509.Certificate{stripped, h.Intermediate.Cert}, roots, false, []error{verify.ErrDowngrade, verify.ErrAltMissing}, 0},
		{"leaf without alt key, default policy (downgrade)", []*x509.Certificate{noKey, h.Intermediate.Cert}, roots, false, []error{verify.ErrDowngrade}, 0},
		{"classic chain, PQ roots, default policy (downgrade)", cl.Certs(), roots, false, []error{verify.ErrDowngrade}, 0},
		{"classic chain, require pq", cl.Certs(), roots, true, []error{verify.ErrAltMissing}, 0},
		{"alt signature altered", []*x509.Certificate{altered, h.Intermediate.Cert}, roots, false, []error{verify.ErrAltSignature, altsig.ErrBadSignature}, 0},
		{"re-signed with the ECDSA key only", []*x509.Certificate{resigned, h.Intermediate.Cert}, roots, false, []error{verify.ErrAltSignature, altsig.ErrBadSignature}, 0},
		{"intermediate forged with the ECDSA root key", []*x509.Certificate{h.Leaf.Cert, forgedInter}, roots, false, []error{verify.ErrAltSignature, altsig.ErrBadSignature}, 1},
		{"leaf alt key does not match issuer", []*x509.Certificate{wrongAlt, h.Intermediate.Cert}, roots, false, []error{verify.ErrAltSignature, altsig.ErrBadSignature}, 0},
		{"leaf without alt public key", []*x509.Certificate{noKey, h.Intermediate.Cert}, roots, true, []error{verify.ErrAltMissing}, 0},
		{"unknown root", h.Certs(), []*x509.Certificate{other.Root.Cert}, false, []error{verify.ErrClassicChain}, -1},
		{"pure chain broken", []*x509.Certificate{brokenPure, p.Intermediate.Cert}, roots, true, []error{verify.ErrPureChain, purecert.ErrBadSignature}, -1},
		{"pure chain, hybrid roots only", p.Certs(), []*x509.Certificate{h.Root.Cert}, true, []error{verify.ErrPureChain, purecert.ErrUnknownAuthority}, -1},
		{"empty", nil, roots, false, []error{verify.ErrEmptyChain}, -1},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := verify.VerifyX509(tt.chain, tt.roots, verify.Options{RequirePQ: tt.requirePQ, Now: clock})
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Fatalf("got %v, want %v", err, w)
				}
			}
			if tt.index >= 0 {
				var ce *verify.CertError
				if !errors.As(err, &ce) || ce.Index != tt.index {
					t.Fatalf("got %v, want a *CertError at %d", err, tt.index)
				}
			}
		})
	}

	// Expiry is enforced for every profile.
	later := func() time.Time { return now.Add(48 * time.Hour) }
	for _, c := range [][]*x509.Certificate{h.Certs(), p.Certs()} {
		if _, err := verify.VerifyX509(c, roots, verify.Options{Now: later}); err == nil {
			t.Fatal("expired chain accepted")
		}
	}
}

// TestSVIDShape presents certificates that are not X509-SVIDs (the attack
// of review finding 14: the bundle root passed as a workload SVID, also
// under RequirePQ) and expects the typed shape error before any PQ check.
func TestSVIDShape(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	h, err := pqtest.Hybrid(now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pqtest.Pure(now)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := pqtest.Classic(now)
	if err != nil {
		t.Fatal(err)
	}
	roots := []*x509.Certificate{h.Root.Cert, p.Root.Cert, cl.Root.Cert}
	leaf := func(mutate func(*x509.Certificate)) *x509.Certificate {
		return reissue(t, cl.Leaf.Cert, cl.Intermediate.Cert, cl.Intermediate.Key, dropAll, mutate)
	}
	uri := func(s string) *url.URL { u, _ := url.Parse(s); return u }
	tests := []struct {
		name  string
		chain []*x509.Certificate
		want  error
		index int
	}{
		{"hybrid root as leaf", []*x509.Certificate{h.Root.Cert}, verify.ErrLeafIsCA, 0},
		{"pure root as leaf", []*x509.Certificate{p.Root.Cert}, verify.ErrLeafIsCA, 0},
		{"intermediate as leaf", []*x509.Certificate{h.Intermediate.Cert, h.Root.Cert}, verify.ErrLeafIsCA, 0},
		{"leaf with keyCertSign", []*x509.Certificate{leaf(func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }), cl.Intermediate.Cert}, verify.ErrLeafKeyUsage, 0},
		{"leaf with cRLSign", []*x509.Certificate{leaf(func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCRLSign }), cl.Intermediate.Cert}, verify.ErrLeafKeyUsage, 0},
		{"leaf without digitalSignature", []*x509.Certificate{leaf(func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment }), cl.Intermediate.Cert}, verify.ErrLeafKeyUsage, 0},
		{"leaf without URI SAN", []*x509.Certificate{leaf(func(c *x509.Certificate) { c.URIs = nil }), cl.Intermediate.Cert}, verify.ErrLeafID, 0},
		{"leaf with two URI SANs", []*x509.Certificate{leaf(func(c *x509.Certificate) { c.URIs = append(c.URIs, uri("spiffe://example.org/b")) }), cl.Intermediate.Cert}, verify.ErrLeafID, 0},
		{"leaf with trust-domain ID only", []*x509.Certificate{leaf(func(c *x509.Certificate) { c.URIs = []*url.URL{uri("spiffe://example.org")} }), cl.Intermediate.Cert}, verify.ErrLeafID, 0},
		{"leaf with https URI", []*x509.Certificate{leaf(func(c *x509.Certificate) { c.URIs = []*url.URL{uri("https://example.org/w")} }), cl.Intermediate.Cert}, verify.ErrLeafID, 0},
		{"non-CA intermediate", []*x509.Certificate{cl.Leaf.Cert, h.Leaf.Cert}, verify.ErrIntermediateNotCA, 1},
	}
	for _, tt := range tests {
		for _, requirePQ := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/requirePQ=%v", tt.name, requirePQ), func(t *testing.T) {
				_, err := verify.VerifyX509(tt.chain, roots, verify.Options{RequirePQ: requirePQ, AllowClassical: true, Now: clock})
				var ce *verify.CertError
				if !errors.Is(err, tt.want) || !errors.Is(err, verify.ErrNotSVID) || !errors.As(err, &ce) || ce.Index != tt.index {
					t.Fatalf("got %v, want %v at certificate %d", err, tt.want, tt.index)
				}
			})
		}
	}
}

// FuzzVerifyX509 fuzzes the leaf `signet verify x509` reads, under each
// policy, against hybrid, pure and classic roots: only the genuine leaves
// may verify.
func FuzzVerifyX509(f *testing.F) {
	now := time.Now()
	clock := func() time.Time { return now }
	h, err := pqtest.Hybrid(now)
	if err != nil {
		f.Fatal(err)
	}
	p, err := pqtest.Pure(now)
	if err != nil {
		f.Fatal(err)
	}
	cl, err := pqtest.Classic(now)
	if err != nil {
		f.Fatal(err)
	}
	roots := []*x509.Certificate{h.Root.Cert, p.Root.Cert, cl.Root.Cert}
	genuine := map[string]bool{string(h.Leaf.Cert.Raw): true, string(p.Leaf.Cert.Raw): true, string(cl.Leaf.Cert.Raw): true}
	f.Add(cl.Leaf.Cert.Raw, uint8(0))
	f.Add(h.Leaf.Cert.Raw, uint8(1))
	f.Add(p.Leaf.Cert.Raw, uint8(2))
	f.Add(h.Root.Cert.Raw, uint8(1))
	f.Fuzz(func(t *testing.T, der []byte, sel uint8) {
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		inter := []*x509.Certificate{cl.Intermediate.Cert, h.Intermediate.Cert, p.Intermediate.Cert}[int(sel)%3]
		chain := []*x509.Certificate{leaf, inter}
		_, _ = verify.CheckSVIDShape(chain)
		for _, o := range []verify.Options{{Now: clock}, {RequirePQ: true, Now: clock}, {AllowClassical: true, Now: clock}} {
			if _, err := verify.VerifyX509(chain, roots, o); err == nil && !genuine[string(der)] {
				t.Fatalf("a fuzzed leaf verified under %+v", o)
			}
		}
	})
}
