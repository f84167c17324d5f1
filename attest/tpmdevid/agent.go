package tpmdevid

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/signet-id/signet/attest/x509pop"
)

// AgentPluginData is the agent's plugin_data, with SPIRE's names, plus
// tpm_tcp_address (a Signet extension: a TPM reached over TCP with the
// raw command protocol, such as `swtpm socket --server type=tcp`).
type AgentPluginData struct {
	DevIDCertPath                string `hcl:"devid_cert_path,optional"`
	DevIDPrivPath                string `hcl:"devid_priv_path,optional"`
	DevIDPubPath                 string `hcl:"devid_pub_path,optional"`
	DevIDPassword                string `hcl:"devid_password,optional"`
	OwnerHierarchyPassword       string `hcl:"owner_hierarchy_password,optional"`
	EndorsementHierarchyPassword string `hcl:"endorsement_hierarchy_password,optional"`
	TPMDevicePath                string `hcl:"tpm_device_path,optional"`
	TPMTCPAddress                string `hcl:"tpm_tcp_address,optional"`
}

// Evidence is the agent half. Payload opens a TPM session (DevID key and a
// fresh AK loaded, EK regenerated) that Respond uses and closes; the
// DevID files are read once, at NewEvidence, as SPIRE's Configure does.
type Evidence struct {
	d         AgentPluginData
	devIDCert [][]byte
	devIDPriv []byte
	devIDPub  []byte

	mu   sync.Mutex
	sess *session // of the last payload
}

// NewEvidence returns the agent half for d, loading the DevID files.
func NewEvidence(d AgentPluginData) (*Evidence, error) {
	switch {
	case d.DevIDCertPath == "":
		return nil, errors.New("tpmdevid: invalid configuration: devid_cert_path is required")
	case d.DevIDPrivPath == "":
		return nil, errors.New("tpmdevid: invalid configuration: devid_priv_path is required")
	case d.DevIDPubPath == "":
		return nil, errors.New("tpmdevid: invalid configuration: devid_pub_path is required")
	case d.TPMDevicePath != "" && d.TPMTCPAddress != "":
		return nil, errors.New("tpmdevid: invalid configuration: only one of tpm_device_path and tpm_tcp_address")
	}
	certs, err := x509pop.LoadCertificates(d.DevIDCertPath)
	if err != nil {
		return nil, fmt.Errorf("tpmdevid: unable to load DevID files: cannot load certificate(s): %w", err)
	}
	e := &Evidence{d: d}
	for _, c := range certs {
		e.devIDCert = append(e.devIDCert, c.Raw)
	}
	if e.devIDPriv, err = os.ReadFile(d.DevIDPrivPath); err != nil {
		return nil, fmt.Errorf("tpmdevid: unable to load DevID files: cannot load private key: %w", err)
	}
	if e.devIDPub, err = os.ReadFile(d.DevIDPubPath); err != nil {
		return nil, fmt.Errorf("tpmdevid: unable to load DevID files: cannot load public key: %w", err)
	}
	return e, nil
}

// Type returns "tpm_devid".
func (e *Evidence) Type() string { return Type }

// Payload opens the TPM session and returns SPIRE's attestation request.
// A session left open by an earlier payload is closed first.
func (e *Evidence) Payload(ctx context.Context) ([]byte, error) {
	e.Close()
	rw, err := openTPM(ctx, e.d.TPMDevicePath, e.d.TPMTCPAddress)
	if err != nil {
		return nil, err
	}
	s, err := openSession(rw, sessionConfig{
		DevIDPriv: e.devIDPriv, DevIDPub: e.devIDPub, DevIDPassword: e.d.DevIDPassword,
		OwnerPassword: e.d.OwnerHierarchyPassword, EndorsementPassword: e.d.EndorsementHierarchyPassword,
	})
	if err != nil {
		return nil, err
	}
	payload, err := e.request(s)
	if err != nil {
		s.Close()
		return nil, err
	}
	e.mu.Lock()
	e.sess = s
	e.mu.Unlock()
	return payload, nil
}

func (e *Evidence) request(s *session) ([]byte, error) {
	ekCert, err := s.ekCert()
	if err != nil {
		return nil, err
	}
	ekPub, err := s.ekPub()
	if err != nil {
		return nil, err
	}
	certified, sig, err := s.certifyDevID()
	if err != nil {
		return nil, err
	}
	return json.Marshal(AttestationRequest{
		DevIDCert: e.devIDCert, DevIDPub: e.devIDPub,
		EKCert: ekCert, EKPub: ekPub,
		AKPub:          s.akPub,
		CertifiedDevID: certified, CertificationSignature: sig,
	})
}

// Respond solves the server's challenges with the last payload's session
// (signs the nonce with the DevID key, activates the credential) and
// closes it: each payload answers one challenge.
func (e *Evidence) Respond(_ context.Context, challenge []byte) ([]byte, error) {
	e.mu.Lock()
	s := e.sess
	e.sess = nil
	e.mu.Unlock()
	if s == nil {
		return nil, errors.New("tpmdevid: challenge before payload")
	}
	defer s.Close()
	ch, err := ParseChallenge(challenge)
	if err != nil {
		return nil, err
	}
	if ch.CredActivation == nil {
		return nil, errors.New("tpmdevid: received empty credential activation challenge from server")
	}
	sig, err := s.signDevID(ch.DevID)
	if err != nil {
		return nil, fmt.Errorf("tpmdevid: unable to solve proof of possession challenge: %w", err)
	}
	secret, err := s.activate(ch.CredActivation.Credential, ch.CredActivation.Secret)
	if err != nil {
		return nil, fmt.Errorf("tpmdevid: unable to solve proof of residency challenge: %w", err)
	}
	return json.Marshal(ChallengeResponse{DevID: sig, CredActivation: secret})
}

// Close closes the session of a payload that got no challenge.
func (e *Evidence) Close() {
	e.mu.Lock()
	s := e.sess
	e.sess = nil
	e.mu.Unlock()
	if s != nil {
		s.Close()
	}
}
