// Package tpmdevid is TPM DevID node attestation, both halves,
// wire-compatible with SPIRE's tpm_devid plugins: the agent presents its
// DevID certificate chain, the DevID and a fresh attestation key (AK)
// public areas, the AK's certification of the DevID key and the TPM's
// endorsement key (EK) certificate and public area (Evidence); the server
// checks the DevID chain and the EK certificate against their CA bundles,
// that the EK certificate holds the EK, that the AK certified the DevID
// key, and then challenges the agent to sign a nonce with the DevID key
// and to activate a credential made for the AK against the EK (Attestor).
// The agent is named spiffe://<td>/spire/agent/tpm_devid/<sha1 fingerprint
// of the DevID certificate>.
package tpmdevid

import (
	"crypto/x509"
	"encoding/json"
	"fmt"

	"github.com/signet-id/signet/attest/x509pop"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// Type is the attestation type name (SPIRE's plugin name).
const Type = "tpm_devid"

// Limits (docs/limits.md).
const (
	// DevIDNonceSize is the length of the nonce the DevID key signs, as
	// SPIRE's.
	DevIDNonceSize = 32
	// MaxPayload bounds the agent's payload, in bytes.
	MaxPayload = 64 << 10
	// MaxResponse bounds the agent's challenge response, in bytes.
	MaxResponse = 8 << 10
	// MaxChallenge bounds the server's challenge the agent parses.
	MaxChallenge = 8 << 10
	// MaxIntermediates bounds the DevID intermediates after the leaf.
	MaxIntermediates = 8
)

// EKCertificateHandleRSA is the NV index of the RSA EK certificate (TCG
// TPM v2.0 Provisioning Guidance, 7.8), where the agent reads it.
const EKCertificateHandleRSA = 0x01c00002

// AttestationRequest is the agent's payload, SPIRE's field names. The
// public areas are TPMT_PUBLIC, CertifiedDevID a TPMS_ATTEST and
// CertificationSignature a TPMT_SIGNATURE, all in TPM wire format.
type AttestationRequest struct {
	DevIDCert [][]byte `json:"DevIDCert"`
	DevIDPub  []byte   `json:"DevIDPub"`

	EKCert []byte `json:"EKCert"`
	EKPub  []byte `json:"EKPub"`

	AKPub []byte `json:"AKPub"`

	CertifiedDevID         []byte `json:"CertifiedDevID"`
	CertificationSignature []byte `json:"CertificationSignature"`
}

// ChallengeRequest is the server's challenge: a nonce for the DevID key
// to sign and a credential to activate.
type ChallengeRequest struct {
	DevID          []byte          `json:"DevID"`
	CredActivation *CredActivation `json:"CredActivation"`
}

// CredActivation is a TPM2_MakeCredential result without the TPM2B size
// prefixes: the credential blob and the encrypted seed.
type CredActivation struct {
	Credential []byte `json:"Credential"`
	Secret     []byte `json:"Secret"`
}

// ChallengeResponse is the agent's answer: the DevID signature of the
// nonce and the activated credential.
type ChallengeResponse struct {
	DevID          []byte `json:"DevID"`
	CredActivation []byte `json:"CredActivation"`
}

// ParsePayload decodes the agent's payload. It parses neither the
// certificates nor the TPM structures.
func ParsePayload(b []byte) (*AttestationRequest, error) {
	var d AttestationRequest
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("tpmdevid: payload: %w", err)
	}
	return &d, nil
}

// ParseChallenge decodes a server challenge.
func ParseChallenge(b []byte) (*ChallengeRequest, error) {
	if len(b) > MaxChallenge {
		return nil, fmt.Errorf("tpmdevid: challenge is %d bytes, longer than the limit of %d", len(b), MaxChallenge)
	}
	var c ChallengeRequest
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("tpmdevid: challenge: %w", err)
	}
	return &c, nil
}

// ParseResponse decodes an agent's challenge response.
func ParseResponse(b []byte) (*ChallengeResponse, error) {
	var r ChallengeResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("tpmdevid: challenge response: %w", err)
	}
	return &r, nil
}

// Fingerprint is the lowercase hex SHA-1 of cert's DER, as SPIRE's (the
// same as x509pop's): the agent ID's last segment.
func Fingerprint(cert *x509.Certificate) string { return x509pop.Fingerprint(cert) }

// Selectors returns SPIRE's tpm_devid selectors, in SPIRE's order:
// subject:cn and issuer:cn of the DevID certificate (if set), then
// ca:fingerprint of every CA on every verified chain (each once).
func Selectors(leaf *x509.Certificate, chains [][]*x509.Certificate) []*types.Selector {
	var vals []string
	if cn := leaf.Subject.CommonName; cn != "" {
		vals = append(vals, "subject:cn:"+cn)
	}
	if cn := leaf.Issuer.CommonName; cn != "" {
		vals = append(vals, "issuer:cn:"+cn)
	}
	for _, fp := range x509pop.CAFingerprints(chains) {
		vals = append(vals, "ca:fingerprint:"+fp)
	}
	out := make([]*types.Selector, len(vals))
	for i, v := range vals {
		out[i] = &types.Selector{Type: Type, Value: v}
	}
	return out
}
