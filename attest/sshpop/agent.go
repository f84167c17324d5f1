package sshpop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/crypto/ssh"
)

// SPIRE's default host key and certificate paths.
const (
	DefaultHostKeyPath  = "/etc/ssh/ssh_host_rsa_key"
	DefaultHostCertPath = "/etc/ssh/ssh_host_rsa_key-cert.pub"
)

// AgentConfig configures the agent half. The tagged fields are SPIRE's
// plugin_data for the agent sshpop plugin.
type AgentConfig struct {
	// HostKeyPath is the host's private key (OpenSSH or PEM); default
	// DefaultHostKeyPath.
	HostKeyPath string `hcl:"host_key_path,optional"`
	// HostCertPath is its certificate (authorized_keys format, as
	// ssh-keygen -s writes it); default DefaultHostCertPath.
	HostCertPath string `hcl:"host_cert_path,optional"`

	// Rand makes the agent's nonces and signatures; default crypto/rand.
	Rand io.Reader
}

// Evidence is the agent half: it presents the host certificate and signs
// the server's challenges with the host key.
type Evidence struct {
	cert   *ssh.Certificate
	signer ssh.Signer
	rand   io.Reader
}

// NewEvidence reads the host key and certificate.
func NewEvidence(cfg AgentConfig) (*Evidence, error) {
	if cfg.HostKeyPath == "" {
		cfg.HostKeyPath = DefaultHostKeyPath
	}
	if cfg.HostCertPath == "" {
		cfg.HostCertPath = DefaultHostCertPath
	}
	key, err := os.ReadFile(cfg.HostKeyPath)
	if err != nil {
		return nil, fmt.Errorf("sshpop: read host key: %w", err)
	}
	certText, err := os.ReadFile(cfg.HostCertPath)
	if err != nil {
		return nil, fmt.Errorf("sshpop: read host cert: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("sshpop: host key %s: %w", cfg.HostKeyPath, err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(certText)
	if err != nil {
		return nil, fmt.Errorf("sshpop: host cert %s: %w", cfg.HostCertPath, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("sshpop: host cert %s is a public key, not a certificate", cfg.HostCertPath)
	}
	return newEvidence(cert, signer, cfg.Rand)
}

// newEvidence checks that signer holds the certificate's key.
func newEvidence(cert *ssh.Certificate, signer ssh.Signer, r io.Reader) (*Evidence, error) {
	if !bytes.Equal(signer.PublicKey().Marshal(), cert.Key.Marshal()) {
		return nil, errors.New("sshpop: the host key does not match the host certificate")
	}
	if r == nil {
		r = rand.Reader
	}
	return &Evidence{cert: cert, signer: signer, rand: r}, nil
}

// Type returns "sshpop".
func (e *Evidence) Type() string { return Type }

// Payload returns the host certificate in SPIRE's JSON form.
func (e *Evidence) Payload(context.Context) ([]byte, error) {
	b, err := json.Marshal(attestationData{Certificate: e.cert.Marshal()})
	if err != nil {
		return nil, fmt.Errorf("sshpop: marshal attestation data: %w", err)
	}
	return b, nil
}

// Respond signs sha256(the server's nonce || a fresh nonce of its own)
// with the host key.
func (e *Evidence) Respond(_ context.Context, challenge []byte) ([]byte, error) {
	var req challengeRequest
	if err := json.Unmarshal(challenge, &req); err != nil {
		return nil, fmt.Errorf("sshpop: unmarshal challenge: %w", err)
	}
	nonce := make([]byte, NonceSize)
	if _, err := io.ReadFull(e.rand, nonce); err != nil {
		return nil, fmt.Errorf("sshpop: generate nonce: %w", err)
	}
	data, err := signedData(req.Nonce, nonce)
	if err != nil {
		return nil, err
	}
	sig, err := e.signer.Sign(e.rand, data)
	if err != nil {
		return nil, fmt.Errorf("sshpop: sign challenge: %w", err)
	}
	b, err := json.Marshal(challengeResponse{Nonce: nonce, Signature: sig})
	if err != nil {
		return nil, fmt.Errorf("sshpop: marshal challenge response: %w", err)
	}
	return b, nil
}
