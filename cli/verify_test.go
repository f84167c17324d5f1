package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/issuer"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestVerifyCommands(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	id := spiffeid.RequireFromPath(td, "/w")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	type material struct{ bundle, svid, jwt string }
	mint := func(p ca.Profile) material {
		m, err := ca.New(ca.Config{TrustDomain: td, Profile: p})
		if err != nil {
			t.Fatal(err)
		}
		iss, _ := issuer.New(issuer.Config{TrustDomain: td, Authority: m})
		params := issuer.X509Params{ID: id}
		switch p {
		case ca.ProfilePQ:
			k, _ := mldsa.GenerateKey(rand.Reader, mldsa.MLDSA44)
			params.PublicKey = k.PublicKey()
		default:
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			params.PublicKey = k.Public()
			if p == ca.ProfileHybrid {
				a, _ := mldsa.GenerateKey(rand.Reader, mldsa.MLDSA44)
				params.AltPublicKey = a.PublicKey()
			}
		}
		chain, err := iss.X509SVID(params)
		if err != nil {
			t.Fatal(err)
		}
		var chainPEM []byte
		for _, c := range chain {
			chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		tok, _, err := iss.JWTSVID(issuer.JWTParams{ID: id, Audience: []string{"db"}})
		if err != nil {
			t.Fatal(err)
		}
		bj, err := bundlecodec.Marshal(m.Bundle(), m.MLDSAJWTKeys())
		if err != nil {
			t.Fatal(err)
		}
		return material{bundle: write(string(p)+".json", bj), svid: write(string(p)+".pem", chainPEM), jwt: tok}
	}
	classic, hybrid, pq := mint(ca.ProfileClassic), mint(ca.ProfileHybrid), mint(ca.ProfilePQ)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"classic x509", []string{"verify", "x509", "--bundle", classic.bundle, classic.svid}, 0, "profile=classic"},
		{"classic x509 require-pq", []string{"verify", "x509", "--bundle", classic.bundle, "--require-pq", classic.svid}, 1, "rejected"},
		{"hybrid x509 require-pq", []string{"verify", "x509", "--bundle", hybrid.bundle, "--require-pq", hybrid.svid}, 0, "profile=hybrid pq_verified=true"},
		{"pq x509 require-pq", []string{"verify", "x509", "--bundle", pq.bundle, "--require-pq", pq.svid}, 0, "profile=pq"},
		{"wrong bundle", []string{"verify", "x509", "--bundle", classic.bundle, hybrid.svid}, 1, "rejected"},
		{"hybrid jwt require-pq", []string{"verify", "jwt", "--bundle", hybrid.bundle, "--audience", "db", "--require-pq", hybrid.jwt}, 0, "profile=hybrid"},
		{"pq jwt", []string{"verify", "jwt", "--bundle", pq.bundle, "--audience", "db", pq.jwt}, 0, "alg=ML-DSA-44"},
		{"classic jwt require-pq", []string{"verify", "jwt", "--bundle", classic.bundle, "--audience", "db", "--require-pq", classic.jwt}, 1, "rejected"},
		{"jwt wrong audience", []string{"verify", "jwt", "--bundle", hybrid.bundle, "--audience", "other", hybrid.jwt}, 1, "rejected"},
		{"missing bundle flag", []string{"verify", "x509", classic.svid}, 2, "--bundle is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(context.Background(), tt.args, &out, &errb)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out.String(), errb.String())
			}
			if got := out.String() + errb.String(); !strings.Contains(got, tt.want) {
				t.Fatalf("output %q lacks %q", got, tt.want)
			}
		})
	}
}
