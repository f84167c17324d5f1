// Package x509pop is X.509 proof-of-possession node attestation, both
// halves, wire-compatible with SPIRE's x509pop plugins: the agent presents
// a certificate chain (Evidence) and proves it holds the leaf's private
// key by signing a server nonce; the server checks the chain against its
// CA bundle and the signature (Attestor) and names the agent
// spiffe://<td>/spire/agent/x509pop/<sha1 fingerprint of the leaf>.
package x509pop

import (
	"crypto/sha1" //nolint:gosec // SPIRE's fingerprint is SHA-1 of the DER
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// Type is the attestation type name (SPIRE's plugin name).
const Type = "x509pop"

// Limits (docs/limits.md).
const (
	// NonceSize is the length of each side's nonce, as SPIRE's.
	NonceSize = 32
	// MaxPayload bounds the agent's payload, in bytes.
	MaxPayload = 64 << 10
	// MaxResponse bounds the agent's challenge response, in bytes.
	MaxResponse = 8 << 10
	// DefaultMaxIntermediates is SPIRE's default bound on the
	// intermediates after the leaf.
	DefaultMaxIntermediates = 4
	// DefaultMaxRSAKeySize is SPIRE's default bound on RSA key sizes, in
	// bits, of the leaf and intermediates.
	DefaultMaxRSAKeySize = 8192
)

// AttestationData is the agent's payload: the DER certificates, leaf
// first, then the intermediates.
type AttestationData struct {
	Certificates [][]byte `json:"certificates"`
}

// NonceChallenge is the server's half of a signature challenge.
type NonceChallenge struct {
	Nonce []byte `json:"nonce"`
}

// Challenge is what the server sends: one of the two, by the leaf's key
// type.
type Challenge struct {
	RSASignature   *NonceChallenge `json:"rsa_signature"`
	ECDSASignature *NonceChallenge `json:"ecdsa_signature"`
}

// RSAResponse is an RSA-PSS (SHA-256) signature over the combined nonces.
type RSAResponse struct {
	Nonce     []byte `json:"nonce"`
	Signature []byte `json:"signature"`
}

// ECDSAResponse is an ECDSA signature (r, s as big-endian bytes) over the
// combined nonces.
type ECDSAResponse struct {
	Nonce []byte `json:"nonce"`
	R     []byte `json:"r"`
	S     []byte `json:"s"`
}

// Response is what the agent answers: the half matching the challenge.
type Response struct {
	RSASignature   *RSAResponse   `json:"rsa_signature"`
	ECDSASignature *ECDSAResponse `json:"ecdsa_signature"`
}

// Fingerprint is the lowercase hex SHA-1 of cert's DER, as SPIRE's.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha1.Sum(cert.Raw) //nolint:gosec // as SPIRE
	return hex.EncodeToString(sum[:])
}

// CAFingerprints returns the Fingerprint of every CA on the verified
// chains (each chain leaf first), each once, in chain order: SPIRE's
// ca:fingerprint selectors of x509pop and tpm_devid.
func CAFingerprints(chains [][]*x509.Certificate) []string {
	var out []string
	seen := map[string]bool{}
	for _, chain := range chains {
		for _, c := range chain[1:] {
			fp := Fingerprint(c)
			if !seen[fp] {
				seen[fp] = true
				out = append(out, fp)
			}
		}
	}
	return out
}

// SerialNumberHex is the serial number in lowercase hex with an even
// number of digits, as SPIRE's serialnumber selector and template field.
func SerialNumberHex(n *big.Int) string {
	s := fmt.Sprintf("%x", n)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

// signedDigest is what both sides sign: SHA-256 of the server's nonce
// followed by the agent's.
func signedDigest(challenge, response []byte) ([]byte, error) {
	if len(challenge) != NonceSize {
		return nil, errors.New("x509pop: invalid challenge nonce")
	}
	if len(response) != NonceSize {
		return nil, errors.New("x509pop: invalid response nonce")
	}
	h := sha256.New()
	h.Write(challenge)
	h.Write(response)
	return h.Sum(nil), nil
}

// ParsePayload decodes the agent's payload. It does not parse the
// certificates.
func ParsePayload(b []byte) (*AttestationData, error) {
	var d AttestationData
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("x509pop: payload: %w", err)
	}
	return &d, nil
}

// ParseChallenge decodes a server challenge.
func ParseChallenge(b []byte) (*Challenge, error) {
	var c Challenge
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("x509pop: challenge: %w", err)
	}
	return &c, nil
}

// ParseResponse decodes an agent's challenge response.
func ParseResponse(b []byte) (*Response, error) {
	var r Response
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("x509pop: challenge response: %w", err)
	}
	return &r, nil
}
