package x509pop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// AgentPluginData is the agent's plugin_data, with SPIRE's names.
type AgentPluginData struct {
	PrivateKeyPath    string `hcl:"private_key_path,optional"`
	CertificatePath   string `hcl:"certificate_path,optional"`
	IntermediatesPath string `hcl:"intermediates_path,optional"`
}

// Evidence is the agent half: it presents the certificate chain and signs
// the server's nonces with the leaf's key. The files are read again for
// every attestation, so a renewed certificate on disk is picked up.
type Evidence struct {
	d    AgentPluginData
	rand io.Reader

	mu  sync.Mutex
	key crypto.PrivateKey // of the last payload
}

// NewEvidence returns the agent half for the files d names, with
// randomness from r (nil: crypto/rand). It loads them once to fail early.
func NewEvidence(d AgentPluginData, r io.Reader) (*Evidence, error) {
	switch {
	case d.PrivateKeyPath == "":
		return nil, errors.New("x509pop: private_key_path is required")
	case d.CertificatePath == "":
		return nil, errors.New("x509pop: certificate_path is required")
	}
	if r == nil {
		r = rand.Reader
	}
	e := &Evidence{d: d, rand: r}
	if _, _, err := e.load(); err != nil {
		return nil, err
	}
	return e, nil
}

// Type returns "x509pop".
func (e *Evidence) Type() string { return Type }

// load reads the key pair (the certificate file may hold a chain) and the
// intermediates, and returns SPIRE's payload.
func (e *Evidence) load() ([]byte, crypto.PrivateKey, error) {
	kp, err := tls.LoadX509KeyPair(e.d.CertificatePath, e.d.PrivateKeyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("x509pop: unable to load keypair: %w", err)
	}
	certs := kp.Certificate
	if strings.TrimSpace(e.d.IntermediatesPath) != "" {
		inter, err := LoadCertificates(e.d.IntermediatesPath)
		if err != nil {
			return nil, nil, fmt.Errorf("x509pop: unable to load intermediate certificates: %w", err)
		}
		for _, c := range inter {
			certs = append(certs, c.Raw)
		}
	}
	payload, err := json.Marshal(AttestationData{Certificates: certs})
	if err != nil {
		return nil, nil, fmt.Errorf("x509pop: marshal payload: %w", err)
	}
	return payload, kp.PrivateKey, nil
}

// Payload returns the chain, leaf first, as SPIRE's agent plugin sends it.
func (e *Evidence) Payload(context.Context) ([]byte, error) {
	payload, key, err := e.load()
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.key = key
	e.mu.Unlock()
	return payload, nil
}

// Respond signs the server's nonce and one of its own with the key of the
// last payload.
func (e *Evidence) Respond(_ context.Context, challenge []byte) ([]byte, error) {
	e.mu.Lock()
	key := e.key
	e.mu.Unlock()
	if key == nil {
		return nil, errors.New("x509pop: challenge before payload")
	}
	ch, err := ParseChallenge(challenge)
	if err != nil {
		return nil, err
	}
	resp, err := SignResponse(e.rand, key, ch)
	if err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}

// SignResponse answers ch with key, drawing the agent's nonce from r.
func SignResponse(r io.Reader, key crypto.PrivateKey, ch *Challenge) (*Response, error) {
	nonce := make([]byte, NonceSize)
	if _, err := io.ReadFull(r, nonce); err != nil {
		return nil, fmt.Errorf("x509pop: nonce: %w", err)
	}
	switch key := key.(type) {
	case *rsa.PrivateKey:
		if ch.RSASignature == nil {
			return nil, errors.New("x509pop: expecting RSA challenge")
		}
		digest, err := signedDigest(ch.RSASignature.Nonce, nonce)
		if err != nil {
			return nil, err
		}
		sig, err := rsa.SignPSS(r, key, crypto.SHA256, digest, nil)
		if err != nil {
			return nil, fmt.Errorf("x509pop: sign: %w", err)
		}
		return &Response{RSASignature: &RSAResponse{Nonce: nonce, Signature: sig}}, nil
	case *ecdsa.PrivateKey:
		if ch.ECDSASignature == nil {
			return nil, errors.New("x509pop: expecting ECDSA challenge")
		}
		digest, err := signedDigest(ch.ECDSASignature.Nonce, nonce)
		if err != nil {
			return nil, err
		}
		rr, ss, err := ecdsa.Sign(r, key, digest)
		if err != nil {
			return nil, fmt.Errorf("x509pop: sign: %w", err)
		}
		return &Response{ECDSASignature: &ECDSAResponse{Nonce: nonce, R: rr.Bytes(), S: ss.Bytes()}}, nil
	default:
		return nil, fmt.Errorf("x509pop: unsupported private key type %T", key)
	}
}
