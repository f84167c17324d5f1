package bench

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/pq/altsig"
	"github.com/signet-id/signet/pq/jwt"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/pqtest"
	"github.com/signet-id/signet/pq/purecert"
	"github.com/signet-id/signet/pq/verify"
)

type profile struct {
	name  string
	chain *pqtest.Chain
	// issue mints one leaf for a subject whose keys already exist (they are
	// generated on the node).
	issue func(tmpl *x509.Certificate) ([]byte, error)
}

func profiles(tb testing.TB, now time.Time) []profile {
	tb.Helper()
	cl, err := pqtest.Classic(now)
	if err != nil {
		tb.Fatal(err)
	}
	hy, err := pqtest.Hybrid(now)
	if err != nil {
		tb.Fatal(err)
	}
	pq, err := pqtest.Pure(now)
	if err != nil {
		tb.Fatal(err)
	}
	return []profile{
		{"classic", cl, func(tmpl *x509.Certificate) ([]byte, error) {
			return x509.CreateCertificate(rand.Reader, tmpl, cl.Intermediate.Cert, cl.Leaf.Key.Public(), cl.Intermediate.Key)
		}},
		{"hybrid", hy, func(tmpl *x509.Certificate) ([]byte, error) {
			return altsig.CreateCertificate(rand.Reader, tmpl, hy.Intermediate.Cert, hy.Leaf.Key.Public(), hy.Intermediate.Key, hy.Intermediate.AltKey, hy.Leaf.AltKey.PublicKey())
		}},
		{"pq", pq, func(tmpl *x509.Certificate) ([]byte, error) {
			return purecert.CreateCertificate(rand.Reader, tmpl, pq.Intermediate.Cert, pq.Leaf.AltKey.PublicKey(), pq.Intermediate.AltKey)
		}},
	}
}

func claims(now time.Time) map[string]any {
	return map[string]any{"sub": pqtest.LeafID, "aud": []string{"vault"}, "exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix()}
}

// TestSizes logs the DER sizes of certificates and the lengths of JWTs per
// profile, and the hybrid/classic ratios, and checks them against what
// their structure implies and against docs/pq-formats.md.
func TestSizes(t *testing.T) {
	now := time.Now()
	ps := profiles(t, now)
	var b strings.Builder
	fmt.Fprintf(&b, "\n| profile | root | intermediate | leaf | leaf+intermediate (SVID chain) |\n|---|---|---|---|---|\n")
	sizes := map[string]int{}
	for _, p := range ps {
		r, i, l := len(p.chain.Root.Cert.Raw), len(p.chain.Intermediate.Cert.Raw), len(p.chain.Leaf.Cert.Raw)
		sizes[p.name] = l
		sizes[p.name+"-chain"] = l + i
		sizes[p.name+"-root"], sizes[p.name+"-intermediate"] = r, i
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d |\n", p.name, r, i, l, l+i)
	}
	fmt.Fprintf(&b, "\nhybrid/classic: leaf %.1fx, SVID chain %.1fx; pq/classic: leaf %.1fx, SVID chain %.1fx\n",
		float64(sizes["hybrid"])/float64(sizes["classic"]), float64(sizes["hybrid-chain"])/float64(sizes["classic-chain"]),
		float64(sizes["pq"])/float64(sizes["classic"]), float64(sizes["pq-chain"])/float64(sizes["classic-chain"]))

	ec := pqtest.NewECKey()
	k44 := pqtest.NewMLDSAKey(mldsa.MLDSA44)
	c := claims(now)
	classic, err := jwt.SignClassic(c, ec, "ec-kid-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	hybrid, err := jwt.SignHybrid(c, ec, "ec-kid-0123456789abcdef", k44, jwt.Thumbprint(k44.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	pure, err := jwt.SignPQ(c, k44, jwt.Thumbprint(k44.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "\n| JWT-SVID | bytes |\n|---|---|\n| classic ES256 | %d |\n| hybrid ES256 + ML-DSA-44 claim | %d |\n| pq ML-DSA-44 | %d |\n",
		len(classic), len(hybrid), len(pure))
	fmt.Fprintf(&b, "\nhybrid/classic JWT: %.1fx\n", float64(len(hybrid))/float64(len(classic)))
	jwk44, _ := jwt.MarshalJWK(k44.PublicKey(), jwt.Thumbprint(k44.PublicKey()), "jwt-svid")
	k65 := pqtest.NewMLDSAKey(mldsa.MLDSA65)
	jwk65, _ := jwt.MarshalJWK(k65.PublicKey(), jwt.Thumbprint(k65.PublicKey()), "jwt-svid")
	fmt.Fprintf(&b, "AKP JWK: ML-DSA-44 %d bytes, ML-DSA-65 %d bytes\n", len(jwk44), len(jwk65))
	t.Log(b.String())
	sizes["jwt-classic"], sizes["jwt-hybrid"], sizes["jwt-pq"] = len(classic), len(hybrid), len(pure)
	sizes["jwk-44"], sizes["jwk-65"] = len(jwk44), len(jwk65)
	checkSizes(t, sizes)
}

// FIPS 204 sizes.
const (
	pub44, sig44 = 1312, 2420
	pub65, sig65 = 1952, 3309
)

// b64 is the length of n bytes in unpadded base64url.
func b64(n int) int { return (n*4 + 2) / 3 }

// checkSizes asserts what the structure of each credential implies (each
// ML-DSA public key and signature it carries), and that the figures in
// docs/pq-formats.md still hold within a few bytes (ECDSA signatures and
// serial numbers vary by a byte or two).
func checkSizes(t *testing.T, sizes map[string]int) {
	t.Helper()
	atLeast := []struct {
		what       string
		big, small string
		extra      int
	}{
		{"hybrid leaf: ML-DSA-44 key + ML-DSA-44 signature", "hybrid", "classic", pub44 + sig44},
		{"hybrid intermediate: ML-DSA-44 key + ML-DSA-65 signature", "hybrid-intermediate", "classic-intermediate", pub44 + sig65},
		{"hybrid root: ML-DSA-65 key + ML-DSA-65 signature", "hybrid-root", "classic-root", pub65 + sig65},
		{"hybrid JWT: ML-DSA-44 signature base64url-encoded twice", "jwt-hybrid", "jwt-classic", b64(b64(sig44))},
		{"hybrid chain over pq chain: the ECDSA parts", "hybrid-chain", "pq-chain", 1},
	}
	for _, c := range atLeast {
		if d := sizes[c.big] - sizes[c.small]; d < c.extra {
			t.Errorf("%s: %s is %d B, only %d B more than %s (%d B), want at least %d", c.what, c.big, sizes[c.big], d, c.small, sizes[c.small], c.extra)
		}
	}
	for _, c := range []struct {
		name string
		min  int
	}{
		{"pq", pub44 + sig44},
		{"jwt-pq", b64(sig44)},
		{"jwk-44", b64(pub44)},
		{"jwk-65", b64(pub65)},
	} {
		if sizes[c.name] < c.min {
			t.Errorf("%s is %d B, smaller than the %d B of ML-DSA material it carries", c.name, sizes[c.name], c.min)
		}
	}
	// The documented promise: a hybrid JWT-SVID fits an 8 KiB HTTP header.
	if n := sizes["jwt-hybrid"]; n >= 8192 {
		t.Errorf("hybrid JWT-SVID is %d B, over the 8 KiB header limit docs/pq-formats.md promises", n)
	}
	documented := map[string]int{
		"classic-root": 447, "classic-intermediate": 489, "classic": 485, "classic-chain": 974,
		"hybrid-root": 5786, "hybrid-intermediate": 5188, "hybrid": 4293, "hybrid-chain": 9481,
		"pq-root": 5572, "pq-intermediate": 4975, "pq": 4081, "pq-chain": 9056,
		"jwt-classic": 291, "jwt-hybrid": 4722, "jwt-pq": 3464,
		"jwk-44": 1859, "jwk-65": 2712,
	}
	const slack = 8
	for name, want := range documented {
		if got := sizes[name]; got < want-slack || got > want+slack {
			t.Errorf("%s is %d B; docs/pq-formats.md says %d: update the doc (and the README) or fix the regression", name, got, want)
		}
	}
}

func BenchmarkIssueLeaf(b *testing.B) {
	now := time.Now()
	for _, p := range profiles(b, now) {
		b.Run(p.name, func(b *testing.B) {
			var size int
			for b.Loop() {
				der, err := p.issue(pqtest.LeafTemplate(pqtest.LeafID, now, time.Hour))
				if err != nil {
					b.Fatal(err)
				}
				size = len(der)
			}
			b.ReportMetric(float64(size), "leaf-bytes")
		})
	}
}

func BenchmarkVerifyChain(b *testing.B) {
	now := time.Now()
	for _, p := range profiles(b, now) {
		b.Run(p.name, func(b *testing.B) {
			roots := []*x509.Certificate{p.chain.Root.Cert}
			opts := verify.Options{RequirePQ: p.name != "classic", Now: func() time.Time { return now }}
			for b.Loop() {
				if _, err := verify.VerifyX509(p.chain.Certs(), roots, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkJWT(b *testing.B) {
	now := time.Now()
	ec := pqtest.NewECKey()
	k44 := pqtest.NewMLDSAKey(mldsa.MLDSA44)
	keys := jwt.KeySet{Classic: map[string]crypto.PublicKey{"ec": ec.Public()}, PQ: map[string]*mldsa.PublicKey{"pq": k44.PublicKey()}}
	c := claims(now)
	opts := jwt.VerifyOptions{Now: func() time.Time { return now }, AllowClassical: true} // classic tokens against a PQ key set
	sign := map[string]func() (string, error){
		"classic": func() (string, error) { return jwt.SignClassic(c, ec, "ec") },
		"hybrid":  func() (string, error) { return jwt.SignHybrid(c, ec, "ec", k44, "pq") },
		"pq":      func() (string, error) { return jwt.SignPQ(c, k44, "pq") },
	}
	for _, name := range []string{"classic", "hybrid", "pq"} {
		b.Run(name+"/sign", func(b *testing.B) {
			var n int
			for b.Loop() {
				tok, err := sign[name]()
				if err != nil {
					b.Fatal(err)
				}
				n = len(tok)
			}
			b.ReportMetric(float64(n), "jwt-bytes")
		})
		tok, err := sign[name]()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/verify", func(b *testing.B) {
			o := opts
			o.RequirePQ = name != "classic"
			for b.Loop() {
				if _, err := jwt.Verify(tok, keys, o); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/sign+verify", func(b *testing.B) {
			o := opts
			o.RequirePQ = name != "classic"
			for b.Loop() {
				tok, err := sign[name]()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := jwt.Verify(tok, keys, o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMLDSA(b *testing.B) {
	msg := make([]byte, 1024)
	for _, alg := range []mldsa.Algorithm{mldsa.MLDSA44, mldsa.MLDSA65} {
		k := pqtest.NewMLDSAKey(alg)
		sig, _ := k.Sign(nil, msg, nil)
		b.Run(alg.String()+"/keygen", func(b *testing.B) {
			for b.Loop() {
				if _, err := mldsa.GenerateKey(rand.Reader, alg); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg.String()+"/sign", func(b *testing.B) {
			for b.Loop() {
				if _, err := k.Sign(nil, msg, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg.String()+"/verify", func(b *testing.B) {
			for b.Loop() {
				if !k.PublicKey().Verify(msg, sig) {
					b.Fatal("verify")
				}
			}
		})
	}
	ec := pqtest.NewECKey()
	b.Run("ECDSA-P256/sign", func(b *testing.B) {
		d := make([]byte, 32)
		for b.Loop() {
			if _, err := ec.Sign(rand.Reader, d, crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
}
