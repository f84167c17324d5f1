package bundle_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/bundle"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/proto"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var td = spiffeid.RequireTrustDomainFromString("example.org")

// fixedBundle builds the same bundle on every run: Ed25519 signatures and
// ML-DSA keys from a seed are deterministic.
func fixedBundle(t *testing.T, withPQ bool) (*spiffebundle.Bundle, map[string]*mldsa.PublicKey) {
	t.Helper()
	b := spiffebundle.New(td)
	for i := range 2 {
		key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, ed25519.SeedSize))
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: fmt.Sprintf("root %d", i)},
			NotBefore: time.Unix(1_700_000_000, 0).UTC(), NotAfter: time.Unix(1_900_000_000, 0).UTC(),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		b.AddX509Authority(c)
	}
	for _, kid := range []string{"kid-b", "kid-a"} {
		key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte(kid[4:]), ed25519.SeedSize))
		if err := b.AddJWTAuthority(kid, key.Public()); err != nil {
			t.Fatal(err)
		}
	}
	b.SetRefreshHint(5 * time.Minute)
	b.SetSequenceNumber(7)
	if !withPQ {
		return b, nil
	}
	keys := map[string]*mldsa.PublicKey{}
	for i, kid := range []string{"pq-b", "pq-a"} {
		sk, err := mldsa.NewKeyFromSeed(mldsa.MLDSA44, bytes.Repeat([]byte{byte(0x40 + i)}, 32))
		if err != nil {
			t.Fatal(err)
		}
		keys[kid] = sk.PublicKey()
	}
	return b, keys
}

// TestGolden pins the JSON form: stable key order, indentation, the
// refresh hint and sequence number, the ML-DSA member. Regenerate with
// go test ./bundle -run TestGolden -update.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		withPQ bool
	}{{"classic", false}, {"hybrid-jwt", true}} {
		t.Run(tc.name, func(t *testing.T) {
			sb, keys := fixedBundle(t, tc.withPQ)
			got, err := bundle.Marshal(sb, keys)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Marshal differs from %s (run with -update if intended):\n%s", path, got)
			}
			back, err := bundle.Parse(td, want)
			if err != nil {
				t.Fatal(err)
			}
			if !back.Equal(sb) {
				t.Fatalf("parsed bundle differs from the one marshalled")
			}
			if len(back.MLDSAKeys) != len(keys) {
				t.Fatalf("%d ML-DSA keys, want %d", len(back.MLDSAKeys), len(keys))
			}
			for kid, k := range keys {
				if !back.MLDSAKeys[kid].Equal(k) {
					t.Fatalf("ML-DSA key %s differs", kid)
				}
			}
		})
	}
}

// TestProtoRoundTrip: the refresh hint and sequence number survive
// bundle → message → bundle. The Bundle API's FromProto used to drop the
// refresh hint; this test fails on that copy.
func TestProtoRoundTrip(t *testing.T) {
	sb, _ := fixedBundle(t, false)
	p, err := bundle.ToProto(sb)
	if err != nil {
		t.Fatal(err)
	}
	if p.RefreshHint != 300 || p.SequenceNumber != 7 || len(p.JwtAuthorities) != 2 || p.JwtAuthorities[0].KeyId != "kid-a" {
		t.Fatalf("ToProto: %v", p)
	}
	back, err := bundle.FromProto(p)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := back.RefreshHint(); !ok || h != 5*time.Minute {
		t.Fatalf("refresh hint after the round trip: %v %v, want 5m", h, ok)
	}
	if !back.Equal(sb) {
		t.Fatal("bundle differs after the round trip")
	}
	// And through JSON: message → bundle → JSON → bundle → message.
	doc, err := bundle.Marshal(back, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := bundle.ParseSPIFFE(td, doc)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := bundle.ToProto(again)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(p, p2) {
		t.Fatalf("message differs after the JSON round trip:\n%v\n%v", p, p2)
	}
}

func TestFromProtoRefuses(t *testing.T) {
	sb, _ := fixedBundle(t, false)
	good, err := bundle.ToProto(sb)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*types.Bundle)
		want string
	}{
		{"trust domain", func(p *types.Bundle) { p.TrustDomain = "Not A Domain" }, "invalid trust domain"},
		{"certificate", func(p *types.Bundle) { p.X509Authorities[0].Asn1 = []byte{0x30} }, "invalid X.509 authority 0"},
		{"key ID", func(p *types.Bundle) { p.JwtAuthorities[0].KeyId = "" }, "missing key ID"},
		{"JWT key", func(p *types.Bundle) { p.JwtAuthorities[1].PublicKey = []byte{0x30, 0} }, `invalid JWT authority "kid-b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := proto.Clone(good).(*types.Bundle)
			tc.edit(p)
			if _, err := bundle.FromProto(p); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("FromProto: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	p := proto.Clone(good).(*types.Bundle)
	p.JwtAuthorities[1].PublicKey = []byte{0x30, 0}
	var skipped []string
	b, err := bundle.FromProtoSkipping(p, func(kid string, _ error) { skipped = append(skipped, kid) })
	if err != nil || len(skipped) != 1 || skipped[0] != "kid-b" || len(b.JWTAuthorities()) != 1 {
		t.Fatalf("FromProtoSkipping: %v, skipped %v", err, skipped)
	}
}

func TestParseLimits(t *testing.T) {
	key := `{"kty":"OKP","crv":"Ed25519","use":"jwt-svid","kid":"k%d","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`
	many := make([]string, bundle.MaxKeys+1)
	for i := range many {
		many[i] = fmt.Sprintf(key, i)
	}
	for _, tc := range []struct {
		name string
		doc  []byte
		want error
	}{
		{"size", append([]byte(`{"keys":[],"x":"`), append(bytes.Repeat([]byte("a"), bundle.MaxSize), '"', '}')...), bundle.ErrTooLarge},
		{"keys", []byte(`{"keys":[` + strings.Join(many, ",") + `]}`), bundle.ErrTooManyKeys},
		{"keys and member", []byte(`{"keys":[` + strings.Join(many[:bundle.MaxKeys], ",") + `],"` + bundle.MemberName + `":[{}]}`), bundle.ErrTooManyKeys},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := bundle.Parse(td, tc.doc); !errors.Is(err, tc.want) {
				t.Errorf("Parse: %v, want %v", err, tc.want)
			}
			if _, err := bundle.ParseSPIFFE(td, tc.doc); !errors.Is(err, tc.want) {
				t.Errorf("ParseSPIFFE: %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := bundle.Parse(td, []byte(`{"keys":[`+strings.Join(many[:bundle.MaxKeys], ",")+`]}`)); err != nil {
		t.Errorf("a bundle at the key limit: %v", err)
	}
}

// TestParsePureKeepsHeader: a bundle whose every authority is in the
// ML-DSA member keeps its refresh hint and sequence number.
func TestParsePureKeepsHeader(t *testing.T) {
	_, keys := fixedBundle(t, true)
	doc, err := bundle.Marshal(spiffebundle.New(td), keys)
	if err != nil {
		t.Fatal(err)
	}
	doc = bytes.Replace(doc, []byte("{"), []byte(`{"spiffe_refresh_hint": 60, "spiffe_sequence": 3,`), 1)
	b, err := bundle.Parse(td, doc)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := b.RefreshHint(); !ok || h != time.Minute {
		t.Errorf("refresh hint %v %v, want 1m", h, ok)
	}
	if s, ok := b.SequenceNumber(); !ok || s != 3 {
		t.Errorf("sequence %v %v, want 3", s, ok)
	}
}
