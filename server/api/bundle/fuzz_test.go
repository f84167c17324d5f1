package bundle

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/proto"
)

// FuzzFromProto fuzzes the conversion of a Bundle message from the wire
// (federated bundles set through the Bundle API): whatever decodes must
// convert without panicking, and an accepted bundle must survive the round
// trip through ToProto.
func FuzzFromProto(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "r"}, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0), IsCA: true, BasicConstraintsValid: true}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	pub, _ := x509.MarshalPKIXPublicKey(k.Public())
	full, _ := proto.Marshal(&types.Bundle{
		TrustDomain: "other.org", X509Authorities: []*types.X509Certificate{{Asn1: der}},
		JwtAuthorities: []*types.JWTKey{{KeyId: "k", PublicKey: pub, ExpiresAt: 1}}, RefreshHint: 60, SequenceNumber: 2,
	})
	small, _ := proto.Marshal(&types.Bundle{TrustDomain: "a", JwtAuthorities: []*types.JWTKey{{KeyId: "k", PublicKey: []byte{0x30, 0}}}})
	f.Add(full)
	f.Add(small)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &types.Bundle{}
		if proto.Unmarshal(data, p) != nil {
			return
		}
		b, err := bundlecodec.FromProto(p)
		if err != nil {
			return
		}
		back, err := bundlecodec.ToProto(b)
		if err != nil {
			t.Fatalf("accepted bundle does not convert back: %v", err)
		}
		if _, err := bundlecodec.FromProto(back); err != nil {
			t.Fatalf("round trip: %v", err)
		}
		_ = applyMask(p, &types.BundleMask{X509Authorities: true})
		_ = mergeMask(back, p, &types.BundleMask{JwtAuthorities: true})
	})
}
