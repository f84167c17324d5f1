package mldsa

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// detRand is a deterministic io.Reader for tests: SHA-256 in counter mode.
type detRand struct{ ctr uint64 }

func (d *detRand) Read(p []byte) (int, error) {
	for i := range p {
		h := sha256.Sum256([]byte{byte(d.ctr >> 5), byte(d.ctr >> 13), byte(d.ctr >> 21)})
		p[i] = h[d.ctr%32]
		d.ctr++
	}
	return len(p), nil
}

func TestGenerateSignVerify(t *testing.T) {
	for _, alg := range []Algorithm{MLDSA44, MLDSA65} {
		t.Run(alg.String(), func(t *testing.T) {
			sk, err := GenerateKey(nil, alg)
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte("hello signet")
			sig1, err := sk.Sign(nil, msg, crypto.Hash(0))
			if err != nil {
				t.Fatal(err)
			}
			sig2, err := Sign(sk, msg)
			if err != nil {
				t.Fatal(err)
			}
			if len(sig1) != alg.SignatureSize() {
				t.Fatalf("signature size %d, want %d", len(sig1), alg.SignatureSize())
			}
			if bytes.Equal(sig1, sig2) {
				t.Fatal("hedged signatures of the same message are identical")
			}
			for _, sig := range [][]byte{sig1, sig2} {
				if !sk.PublicKey().Verify(msg, sig) {
					t.Fatal("valid signature rejected")
				}
			}
			bad := append([]byte(nil), sig1...)
			bad[10] ^= 1
			if sk.PublicKey().Verify(msg, bad) {
				t.Fatal("altered signature accepted")
			}
			if sk.PublicKey().Verify([]byte("other"), sig1) {
				t.Fatal("signature over another message accepted")
			}
			if _, err := sk.Sign(nil, msg, crypto.SHA256); !errors.Is(err, ErrHashedMessage) {
				t.Fatalf("Sign with SHA256 opts: %v", err)
			}
		})
	}
}

func TestGenerateKeyDeterministic(t *testing.T) {
	a, err := GenerateKey(&detRand{}, MLDSA44)
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKey(&detRand{}, MLDSA44)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Equal(b) || !a.PublicKey().Equal(b.PublicKey()) {
		t.Fatal("same randomness gave different keys")
	}
	c, err := GenerateKey(&detRand{}, MLDSA65)
	if err != nil {
		t.Fatal(err)
	}
	if a.PublicKey().Equal(c.PublicKey()) {
		t.Fatal("keys of different parameter sets compare equal")
	}
}

func TestPKIXRoundTrip(t *testing.T) {
	for _, alg := range []Algorithm{MLDSA44, MLDSA65} {
		sk, err := GenerateKey(nil, alg)
		if err != nil {
			t.Fatal(err)
		}
		der, err := MarshalPKIXPublicKey(sk.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		// SEQUENCE { SEQUENCE { OID }, BIT STRING { 00 key } }: 4+2+11+4+1+len.
		if want := 4 + 2 + 11 + 4 + 1 + alg.PublicKeySize(); len(der) != want {
			t.Fatalf("%s SPKI is %d bytes, want %d", alg, len(der), want)
		}
		pk, err := ParsePKIXPublicKey(der)
		if err != nil {
			t.Fatal(err)
		}
		if !pk.Equal(sk.PublicKey()) {
			t.Fatal("public key changed in round trip")
		}
	}
}

func TestParsePKIXRejects(t *testing.T) {
	sk, _ := GenerateKey(nil, MLDSA44)
	raw := sk.PublicKey().Bytes()
	spki := func(f func(b *cryptobyte.Builder)) []byte {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, f)
		return b.BytesOrPanic()
	}
	good, _ := MarshalPKIXPublicKey(sk.PublicKey())
	tests := map[string][]byte{
		"empty":    nil,
		"trailing": append(append([]byte(nil), good...), 0),
		"null params": spki(func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(OIDMLDSA44)
				b.AddASN1NULL()
			})
			b.AddASN1BitString(raw)
		}),
		"short key": spki(func(b *cryptobyte.Builder) {
			MLDSA44.addAlgorithmIdentifier(b)
			b.AddASN1BitString(raw[1:])
		}),
		"65 oid with 44 key": spki(func(b *cryptobyte.Builder) {
			MLDSA65.addAlgorithmIdentifier(b)
			b.AddASN1BitString(raw)
		}),
		"unknown oid": spki(func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier([]int{2, 16, 840, 1, 101, 3, 4, 3, 19})
			})
			b.AddASN1BitString(raw)
		}),
	}
	for name, der := range tests {
		if _, err := ParsePKIXPublicKey(der); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPKCS8RoundTrip(t *testing.T) {
	for _, alg := range []Algorithm{MLDSA44, MLDSA65} {
		sk, err := GenerateKey(nil, alg)
		if err != nil {
			t.Fatal(err)
		}
		der, err := MarshalPKCS8PrivateKey(sk)
		if err != nil {
			t.Fatal(err)
		}
		if len(der) != 54 {
			t.Fatalf("%s seed-form PKCS#8 is %d bytes, want 54", alg, len(der))
		}
		got, err := ParsePKCS8PrivateKey(der)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(sk) || !got.PublicKey().Equal(sk.PublicKey()) {
			t.Fatal("private key changed in round trip")
		}
	}
}

// pkcs8 builds a PKCS#8 structure with the given private key CHOICE contents.
func pkcs8(alg Algorithm, version int64, inner []byte, pub []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(version)
		alg.addAlgorithmIdentifier(b)
		b.AddASN1OctetString(inner)
		if pub != nil {
			b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddUint8(0)
				b.AddBytes(pub)
			})
		}
	})
	return b.BytesOrPanic()
}

func TestParsePKCS8Forms(t *testing.T) {
	sk, _ := GenerateKey(nil, MLDSA65)
	other, _ := GenerateKey(nil, MLDSA65)
	both := func(seed, expanded []byte) []byte {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(seed)
			b.AddASN1OctetString(expanded)
		})
		return b.BytesOrPanic()
	}
	octets := func(p []byte) []byte {
		var b cryptobyte.Builder
		b.AddASN1OctetString(p)
		return b.BytesOrPanic()
	}
	seedForm := func(p []byte) []byte {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(p) })
		return b.BytesOrPanic()
	}
	tests := []struct {
		name string
		der  []byte
		ok   bool
	}{
		{"both", pkcs8(MLDSA65, 0, both(sk.Seed(), sk.expandedBytes()), nil), true},
		{"seed v1 with public key", pkcs8(MLDSA65, 1, seedForm(sk.Seed()), sk.PublicKey().Bytes()), true},
		{"both mismatched", pkcs8(MLDSA65, 0, both(sk.Seed(), other.expandedBytes()), nil), false},
		{"expanded only", pkcs8(MLDSA65, 0, octets(sk.expandedBytes()), nil), false},
		{"short seed", pkcs8(MLDSA65, 0, seedForm(sk.Seed()[:31]), nil), false},
		{"wrong public key", pkcs8(MLDSA65, 1, seedForm(sk.Seed()), other.PublicKey().Bytes()), false},
		{"public key in v0", pkcs8(MLDSA65, 0, seedForm(sk.Seed()), sk.PublicKey().Bytes()), false},
		{"version 2", pkcs8(MLDSA65, 2, seedForm(sk.Seed()), nil), false},
	}
	for _, tt := range tests {
		got, err := ParsePKCS8PrivateKey(tt.der)
		if tt.ok {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			} else if !got.Equal(sk) {
				t.Errorf("%s: wrong key", tt.name)
			}
		} else if err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}

func TestSignerPublicKey(t *testing.T) {
	sk, _ := GenerateKey(nil, MLDSA44)
	pk, err := SignerPublicKey(sk)
	if err != nil || !pk.Equal(sk.PublicKey()) {
		t.Fatalf("SignerPublicKey: %v", err)
	}
	if _, err := SignerPublicKey(nil); err == nil {
		t.Fatal("nil signer accepted")
	}
}

func FuzzParsePKIXPublicKey(f *testing.F) {
	for _, alg := range []Algorithm{MLDSA44, MLDSA65} {
		sk, _ := GenerateKey(&detRand{}, alg)
		der, _ := MarshalPKIXPublicKey(sk.PublicKey())
		f.Add(der)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		pk, err := ParsePKIXPublicKey(der)
		if err != nil {
			return
		}
		out, err := MarshalPKIXPublicKey(pk)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, der) {
			t.Fatal("accepted a non-canonical SubjectPublicKeyInfo")
		}
	})
}

func FuzzParsePKCS8PrivateKey(f *testing.F) {
	sk, _ := GenerateKey(&detRand{}, MLDSA44)
	der, _ := MarshalPKCS8PrivateKey(sk)
	f.Add(der)
	f.Add(pkcs8(MLDSA44, 1, []byte{0x80, 0x20, 1, 2, 3}, []byte{1, 2}))
	f.Fuzz(func(t *testing.T, der []byte) {
		k, err := ParsePKCS8PrivateKey(der)
		if err != nil {
			return
		}
		if _, err := MarshalPKCS8PrivateKey(k); err != nil {
			t.Fatal(err)
		}
	})
}
