package tpmdevid

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/legacy/tpm2/credactivation"
	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/x509pop"
	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/spireid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ServerPluginData is the server's plugin_data, with SPIRE's names.
type ServerPluginData struct {
	DevIDCAPath       string `hcl:"devid_ca_path,optional"`
	EndorsementCAPath string `hcl:"endorsement_ca_path,optional"`
}

// Config configures the server half.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// DevIDRoots verify DevID certificates, EKRoots EK certificates.
	DevIDRoots, EKRoots []*x509.Certificate
	// Clock validates the chains; default the real clock.
	Clock clock.Clock
	// Rand draws the nonces; default crypto/rand.
	Rand io.Reader
}

// ConfigFromPluginData loads the two CA bundles d names; both are
// required, as in SPIRE.
func ConfigFromPluginData(td spiffeid.TrustDomain, d ServerPluginData) (Config, error) {
	if d.DevIDCAPath == "" {
		return Config{}, errors.New("tpmdevid: devid_ca_path is required")
	}
	if d.EndorsementCAPath == "" {
		return Config{}, errors.New("tpmdevid: endorsement_ca_path is required")
	}
	devid, err := x509pop.LoadCertificates(d.DevIDCAPath)
	if err != nil {
		return Config{}, fmt.Errorf("tpmdevid: unable to load DevID trust bundle: %w", err)
	}
	ek, err := x509pop.LoadCertificates(d.EndorsementCAPath)
	if err != nil {
		return Config{}, fmt.Errorf("tpmdevid: unable to load endorsement trust bundle: %w", err)
	}
	return Config{TrustDomain: td, DevIDRoots: devid, EKRoots: ek}, nil
}

// Attestor is the server half. Its errors are gRPC statuses:
// InvalidArgument for malformed evidence, PermissionDenied for evidence
// that does not verify (SPIRE answers InvalidArgument for both).
type Attestor struct {
	cfg                 Config
	devIDRoots, ekRoots *x509.CertPool
}

// NewAttestor returns the server half.
func NewAttestor(cfg Config) (*Attestor, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("tpmdevid: trust domain is required")
	}
	if len(cfg.DevIDRoots) == 0 || len(cfg.EKRoots) == 0 {
		return nil, errors.New("tpmdevid: DevID and endorsement CA certificates are required")
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	pool := func(cs []*x509.Certificate) *x509.CertPool {
		p := x509.NewCertPool()
		for _, c := range cs {
			p.AddCert(c)
		}
		return p
	}
	return &Attestor{cfg: cfg, devIDRoots: pool(cfg.DevIDRoots), ekRoots: pool(cfg.EKRoots)}, nil
}

// Type returns "tpm_devid".
func (a *Attestor) Type() string { return Type }

// CheckPayload refuses a payload over MaxPayload before anything else.
func (a *Attestor) CheckPayload(payload []byte) error {
	if n := len(payload); n > MaxPayload {
		return status.Errorf(codes.InvalidArgument, "tpmdevid: payload is %d bytes, longer than the limit of %d", n, MaxPayload)
	}
	return nil
}

// evidence is a payload that verified, up to the challenges.
type evidence struct {
	devID  *x509.Certificate
	chains [][]*x509.Certificate
	akPub  tpm2.Public
	ekPub  tpm2.Public
}

// Attest verifies the payload, challenges the agent once (DevID
// signature of a fresh nonce and credential activation for the AK against
// the EK) and returns SPIRE's agent ID and selectors. A tpm_devid agent
// may attest again (CanReattest), as in SPIRE.
func (a *Attestor) Attest(ctx context.Context, req attest.NodeRequest) (attest.NodeResult, error) {
	if err := a.CheckPayload(req.Payload); err != nil {
		return attest.NodeResult{}, err
	}
	if len(req.Payload) == 0 {
		return attest.NodeResult{}, status.Error(codes.InvalidArgument, "missing attestation payload")
	}
	ev, err := a.verify(req.Payload)
	if err != nil {
		return attest.NodeResult{}, err
	}
	devIDNonce := make([]byte, DevIDNonceSize)
	if _, err := io.ReadFull(a.cfg.Rand, devIDNonce); err != nil {
		return attest.NodeResult{}, status.Errorf(codes.Internal, "unable to generate challenge: %v", err)
	}
	cred, credNonce, err := a.credentialChallenge(ev.akPub, ev.ekPub)
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.Internal, "cannot generate credential activation challenge: %v", err)
	}
	chb, err := json.Marshal(ChallengeRequest{DevID: devIDNonce, CredActivation: cred})
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.Internal, "unable to marshal challenges data: %v", err)
	}
	if req.Challenge == nil {
		return attest.NodeResult{}, status.Error(codes.Internal, "tpmdevid: no challenge channel")
	}
	respb, err := req.Challenge(ctx, chb)
	if err != nil {
		return attest.NodeResult{}, err
	}
	if len(respb) > MaxResponse {
		return attest.NodeResult{}, status.Errorf(codes.InvalidArgument, "tpmdevid: challenge response is %d bytes, longer than the limit of %d", len(respb), MaxResponse)
	}
	resp, err := ParseResponse(respb)
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.InvalidArgument, "unable to unmarshall challenges response: %v", err)
	}
	if err := verifyDevIDSignature(ev.devID, devIDNonce, resp.DevID); err != nil {
		return attest.NodeResult{}, status.Errorf(codes.PermissionDenied, "devID challenge verification failed: %v", err)
	}
	if subtle.ConstantTimeCompare(credNonce, resp.CredActivation) != 1 {
		return attest.NodeResult{}, status.Error(codes.PermissionDenied, "credential activation failed: nonces are different")
	}
	id, err := spireid.AgentID(a.cfg.TrustDomain, Type, Fingerprint(ev.devID))
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.Internal, "failed to create agent ID: %v", err)
	}
	return attest.NodeResult{AgentID: id, Selectors: Selectors(ev.devID, ev.chains), CanReattest: true}, nil
}

// verify checks everything the payload alone can show: the DevID chain,
// the EK certificate and that it holds the EK, and the AK's certification
// of the DevID key, which must be the certificate's key.
func (a *Attestor) verify(payload []byte) (*evidence, error) {
	d, err := ParsePayload(payload)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "unable to unmarshall attestation data: %v", err)
	}
	if len(d.DevIDCert) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no DevID certificate to attest")
	}
	if len(d.DevIDCert)-1 > MaxIntermediates {
		return nil, status.Error(codes.InvalidArgument, "too many DevID intermediate certificates")
	}
	leaf, err := x509.ParseCertificate(d.DevIDCert[0])
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "unable to parse DevID certificate: %v", err)
	}
	inter := x509.NewCertPool()
	for i, der := range d.DevIDCert[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "unable to parse DevID intermediate certificate %d: %v", i, err)
		}
		inter.AddCert(c)
	}
	for _, m := range []struct {
		b    []byte
		what string
	}{{d.AKPub, "attestation key public blob"}, {d.DevIDPub, "DevID key public blob"}, {d.EKCert, "endorsement certificate"}, {d.EKPub, "endorsement key public blob"}} {
		if len(m.b) == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "missing %s", m.what)
		}
	}
	ekCert, err := x509.ParseCertificate(d.EKCert)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "cannot parse endorsement certificate: %v", err)
	}
	devIDPub, err := tpm2.DecodePublic(d.DevIDPub)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "cannot decode DevID key public blob: %v", err)
	}
	akPub, err := tpm2.DecodePublic(d.AKPub)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "cannot decode attestation key public blob: %v", err)
	}
	ekPub, err := tpm2.DecodePublic(d.EKPub)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "cannot decode endorsement key public blob: %v", err)
	}

	chains, err := leaf.Verify(x509.VerifyOptions{
		Intermediates: inter, Roots: a.devIDRoots, CurrentTime: a.cfg.Clock.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "unable to verify DevID signature: verification failed: %v", err)
	}
	if err := keysMatch(leaf.PublicKey, devIDPub); err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "DevID key public blob is not the DevID certificate's key: %v", err)
	}
	if err := keysMatch(ekCert.PublicKey, ekPub); err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "public key in EK certificate differs from public key created via EK template: %v", err)
	}
	if err := a.verifyEKCert(ekCert); err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "cannot verify EK signature: %v", err)
	}
	if err := verifyCertification(akPub, devIDPub, d.CertifiedDevID, d.CertificationSignature); err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "cannot verify that DevID is in the same TPM than AK: %v", err)
	}
	return &evidence{devID: leaf, chains: chains, akPub: akPub, ekPub: ekPub}, nil
}

// verifyEKCert verifies the EK certificate against the endorsement roots;
// a critical SAN (TPM manufacturer attributes, which crypto/x509 does not
// parse) is accepted, as SPIRE does.
func (a *Attestor) verifyEKCert(c *x509.Certificate) error {
	san := asn1.ObjectIdentifier{2, 5, 29, 17}
	cc := *c
	cc.UnhandledCriticalExtensions = nil
	for _, oid := range c.UnhandledCriticalExtensions {
		if !oid.Equal(san) {
			cc.UnhandledCriticalExtensions = append(cc.UnhandledCriticalExtensions, oid)
		}
	}
	if _, err := cc.Verify(x509.VerifyOptions{Roots: a.ekRoots, CurrentTime: a.cfg.Clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("endorsement certificate verification failed: %w", err)
	}
	return nil
}

// keysMatch reports whether the certificate's key is the TPM public
// area's key.
func keysMatch(certKey crypto.PublicKey, pub tpm2.Public) error {
	k, err := pub.Key()
	if err != nil {
		return fmt.Errorf("cannot get key from public blob: %w", err)
	}
	eq, ok := certKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !eq.Equal(k) {
		return errors.New("keys differ")
	}
	return nil
}

// akAttrs are the attributes an AK must have: a restricted signing key
// created in, and never leaving, the TPM (so its TPMS_ATTEST are the
// TPM's own).
const akAttrs = tpm2.FlagSign | tpm2.FlagRestricted | tpm2.FlagFixedTPM | tpm2.FlagFixedParent | tpm2.FlagSensitiveDataOrigin

// verifyCertification checks the AK's TPMS_ATTEST certifying the DevID
// key: the AK is a restricted TPM-resident RSA key, its RSASSA signature
// over attest verifies, and the certified name is the DevID key's.
func verifyCertification(ak, devID tpm2.Public, attestData, sigRaw []byte) error {
	if ak.Attributes&akAttrs != akAttrs {
		return errors.New("attestation key is not a restricted signing key fixed to the TPM")
	}
	if devID.Attributes&tpm2.FlagFixedTPM == 0 {
		return errors.New("DevID key is not fixed to the TPM")
	}
	k, err := ak.Key()
	if err != nil {
		return err
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok || ak.RSAParameters == nil || ak.RSAParameters.Sign == nil {
		return errors.New("only RSA attestation keys with a signature scheme are supported")
	}
	h, err := ak.RSAParameters.Sign.Hash.Hash()
	if err != nil {
		return err
	}
	sig, err := tpm2.DecodeSignature(bytes.NewBuffer(sigRaw))
	if err != nil {
		return fmt.Errorf("decode signature: %w", err)
	}
	if sig.RSA == nil {
		return errors.New("not an RSA signature")
	}
	hh := h.New()
	hh.Write(attestData)
	if err := rsa.VerifyPKCS1v15(rk, h, hh.Sum(nil), sig.RSA.Signature); err != nil {
		return err
	}
	data, err := tpm2.DecodeAttestationData(attestData)
	if err != nil {
		return err
	}
	if data.Type != tpm2.TagAttestCertify || data.AttestedCertifyInfo == nil {
		return errors.New("missing certify info")
	}
	ok, err = data.AttestedCertifyInfo.Name.MatchesPublic(devID)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("certify failed")
	}
	return nil
}

// verifyDevIDSignature checks the DevID key's signature of the nonce:
// PKCS#1 v1.5 or ECDSA, SHA-256.
func verifyDevIDSignature(cert *x509.Certificate, nonce, sig []byte) error {
	var alg x509.SignatureAlgorithm
	switch k := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		alg = x509.SHA256WithRSA
	case *ecdsa.PublicKey:
		alg = x509.ECDSAWithSHA256
	default:
		return fmt.Errorf("unsupported private key type %T", k)
	}
	return cert.CheckSignature(alg, nonce, sig)
}

// credentialChallenge makes a credential (a nonce the size of the EK's
// name hash) that only the TPM holding both the EK and the AK can
// activate.
func (a *Attestor) credentialChallenge(akPub, ekPub tpm2.Public) (*CredActivation, []byte, error) {
	name, err := akPub.Name()
	if err != nil {
		return nil, nil, fmt.Errorf("cannot extract name from AK public: %w", err)
	}
	h, err := ekPub.NameAlg.Hash()
	if err != nil {
		return nil, nil, err
	}
	nonce := make([]byte, h.Size())
	if _, err := io.ReadFull(a.cfg.Rand, nonce); err != nil {
		return nil, nil, err
	}
	k, err := ekPub.Key()
	if err != nil {
		return nil, nil, err
	}
	if _, ok := k.(*rsa.PublicKey); !ok || ekPub.RSAParameters == nil || ekPub.RSAParameters.Symmetric == nil {
		return nil, nil, errors.New("unsupported algorithm")
	}
	cred, secret, err := credactivation.Generate(name.Digest, k, int(ekPub.RSAParameters.Symmetric.KeyBits)/8, nonce)
	if err != nil {
		return nil, nil, err
	}
	return &CredActivation{Credential: cred[2:], Secret: secret[2:]}, nonce, nil
}
