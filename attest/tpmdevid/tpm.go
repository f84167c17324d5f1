package tpmdevid

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// maxTPMResponse bounds one response read from a TCP TPM.
const maxTPMResponse = 64 << 10

// tcpTimeout bounds one command on a TCP TPM when ctx has no deadline.
const tcpTimeout = 30 * time.Second

// openTPM opens the TPM: a TCP address speaking the raw TPM 2.0 command
// protocol (swtpm socket --server type=tcp; a Signet extension), else the
// character device at devicePath (SPIRE's tpm_device_path; default
// /dev/tpmrm0, then /dev/tpm0).
func openTPM(ctx context.Context, devicePath, tcpAddress string) (io.ReadWriteCloser, error) {
	if tcpAddress != "" {
		return DialTCP(ctx, tcpAddress)
	}
	var rw io.ReadWriteCloser
	var err error
	if devicePath == "" {
		rw, err = tpm2.OpenTPM()
	} else {
		rw, err = tpm2.OpenTPM(devicePath)
	}
	if err != nil {
		return nil, fmt.Errorf("tpmdevid: open TPM %q: %w", devicePath, err)
	}
	return rw, nil
}

// DialTCP connects to a TPM at a TCP address that speaks the raw TPM 2.0
// command protocol (swtpm's --server type=tcp). Commands time out at
// ctx's deadline, or after 30s each without one.
func DialTCP(ctx context.Context, address string) (io.ReadWriteCloser, error) {
	return Dial(ctx, "tcp", address)
}

// Dial is DialTCP for any stream network ("unix" for swtpm's
// --server type=unixio).
func Dial(ctx context.Context, network, address string) (io.ReadWriteCloser, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("tpmdevid: dial TPM at %s: %w", address, err)
	}
	dl, ok := ctx.Deadline()
	return &tcpTPM{c: c, deadline: dl, hasDeadline: ok}, nil
}

// tcpTPM frames the raw TPM protocol over TCP: Write sends one command
// and reads its whole response (header size first), Read returns it.
type tcpTPM struct {
	c           net.Conn
	deadline    time.Time
	hasDeadline bool
	resp        []byte
}

func (t *tcpTPM) Write(cmd []byte) (int, error) {
	dl := t.deadline
	if !t.hasDeadline {
		dl = time.Now().Add(tcpTimeout)
	}
	if err := t.c.SetDeadline(dl); err != nil {
		return 0, err
	}
	if _, err := t.c.Write(cmd); err != nil {
		return 0, fmt.Errorf("tpmdevid: send TPM command: %w", err)
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(t.c, hdr); err != nil {
		return 0, fmt.Errorf("tpmdevid: read TPM response: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxTPMResponse {
		return 0, fmt.Errorf("tpmdevid: TPM response size %d out of range", size)
	}
	resp := make([]byte, size)
	copy(resp, hdr)
	if _, err := io.ReadFull(t.c, resp[10:]); err != nil {
		return 0, fmt.Errorf("tpmdevid: read TPM response: %w", err)
	}
	t.resp = resp
	return len(cmd), nil
}

func (t *tcpTPM) Read(p []byte) (int, error) {
	if t.resp == nil {
		return 0, errors.New("tpmdevid: TPM read without a command")
	}
	if len(p) < len(t.resp) {
		return 0, fmt.Errorf("tpmdevid: TPM response of %d bytes does not fit %d", len(t.resp), len(p))
	}
	n := copy(p, t.resp)
	t.resp = nil
	return n, nil
}

func (t *tcpTPM) Close() error { return t.c.Close() }

// symAES128CFB is the storage keys' symmetric scheme.
func symAES128CFB() *tpm2.SymScheme {
	return &tpm2.SymScheme{Alg: tpm2.AlgAES, KeyBits: 128, Mode: tpm2.AlgCFB}
}

// EKPolicy is the default EK's authPolicy: PolicySecret(TPM_RH_ENDORSEMENT)
// (TCG EK Credential Profile 2.0, 2.1.5.1).
func EKPolicy() []byte {
	buf, err := tpmutil.Pack(tpm2.CmdPolicySecret, tpm2.HandleEndorsement)
	if err != nil {
		panic(err) // fixed input
	}
	d1 := sha256.Sum256(append(make([]byte, 32), buf...))
	d2 := sha256.Sum256(d1[:])
	return d2[:]
}

// EKTemplateRSA is the TCG default RSA EK template (EK Credential
// Profile 2.0, template L-1), the one SPIRE's agent regenerates.
func EKTemplateRSA() tpm2.Public {
	return tpm2.Public{
		Type:       tpm2.AlgRSA,
		NameAlg:    tpm2.AlgSHA256,
		Attributes: (tpm2.FlagStorageDefault | tpm2.FlagAdminWithPolicy) &^ tpm2.FlagUserWithAuth,
		AuthPolicy: EKPolicy(),
		RSAParameters: &tpm2.RSAParams{
			Symmetric:  symAES128CFB(),
			KeyBits:    2048,
			ModulusRaw: make([]byte, 256),
		},
	}
}

// SRKTemplateHighRSA is the high-range RSA SRK template (H-1) under which
// DevID keys are created and loaded.
func SRKTemplateHighRSA() tpm2.Public {
	return tpm2.Public{
		Type:          tpm2.AlgRSA,
		NameAlg:       tpm2.AlgSHA256,
		Attributes:    tpm2.FlagStorageDefault | tpm2.FlagNoDA,
		RSAParameters: &tpm2.RSAParams{Symmetric: symAES128CFB(), KeyBits: 2048},
	}
}

// SRKTemplateHighECC is the high-range ECC SRK template (H-2).
func SRKTemplateHighECC() tpm2.Public {
	return tpm2.Public{
		Type:          tpm2.AlgECC,
		NameAlg:       tpm2.AlgSHA256,
		Attributes:    tpm2.FlagStorageDefault | tpm2.FlagNoDA,
		ECCParameters: &tpm2.ECCParams{Symmetric: symAES128CFB(), CurveID: tpm2.CurveNISTP256},
	}
}

// akTemplateRSA is the attestation key's template: a restricted RSA
// signing key (RSASSA, SHA-256) that never leaves the TPM.
func akTemplateRSA() tpm2.Public {
	return tpm2.Public{
		Type:       tpm2.AlgRSA,
		NameAlg:    tpm2.AlgSHA256,
		Attributes: tpm2.FlagSignerDefault,
		RSAParameters: &tpm2.RSAParams{
			Sign:    &tpm2.SigScheme{Alg: tpm2.AlgRSASSA, Hash: tpm2.AlgSHA256},
			KeyBits: 2048,
		},
	}
}

// sessionConfig is what a session needs: the DevID key blobs (as
// TPM2_Create returns them) and the passwords.
type sessionConfig struct {
	DevIDPriv, DevIDPub                []byte
	DevIDPassword                      string
	OwnerPassword, EndorsementPassword string
}

// session is one attestation's TPM state: the DevID key and a fresh AK
// loaded, and the EK regenerated. Close flushes them (a TPM without a
// resource manager keeps transient objects after the connection).
type session struct {
	rw        io.ReadWriteCloser
	cfg       sessionConfig
	devID     tpmutil.Handle
	devIDHash tpm2.Algorithm
	ak        tpmutil.Handle
	akAuth    string
	akPub     []byte
	ek        tpmutil.Handle
}

func randomPassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return string(b), nil
}

// openSession loads the DevID key, creates and loads an AK, and
// regenerates the EK, as SPIRE's agent does (SPIRE makes the AK's parent
// an RSA SRK always; here it is the DevID key's). On error it closes rw.
func openSession(rw io.ReadWriteCloser, cfg sessionConfig) (_ *session, err error) {
	s := &session{rw: rw, cfg: cfg}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	srkAuth, err := randomPassword()
	if err != nil {
		return nil, err
	}
	pub, err := tpm2.DecodePublic(cfg.DevIDPub)
	if err != nil {
		return nil, fmt.Errorf("tpmdevid: decode DevID public: %w", err)
	}
	if pub.Attributes&tpm2.FlagSign == 0 {
		return nil, errors.New("tpmdevid: DevID key is not a signing key")
	}
	srk := SRKTemplateHighRSA()
	switch {
	case pub.Type == tpm2.AlgRSA && pub.RSAParameters != nil && pub.RSAParameters.Sign != nil:
		s.devIDHash = pub.RSAParameters.Sign.Hash
	case pub.Type == tpm2.AlgECC && pub.ECCParameters != nil && pub.ECCParameters.Sign != nil:
		srk = SRKTemplateHighECC()
		s.devIDHash = pub.ECCParameters.Sign.Hash
	default:
		return nil, fmt.Errorf("tpmdevid: DevID key type 0x%04x without a signature scheme", pub.Type)
	}
	if s.devIDHash.IsNull() {
		return nil, errors.New("tpmdevid: DevID signature hash algorithm is NULL")
	}
	if s.akAuth, err = randomPassword(); err != nil {
		return nil, err
	}
	// One storage root key (of the DevID key's type) is the parent of the
	// DevID key and of the AK; it is flushed before the EK is made, as a
	// TPM has few transient object slots (three on swtpm).
	if err := s.withSRK(srk, srkAuth, func(parent tpmutil.Handle) error {
		var err error
		if s.devID, _, err = tpm2.Load(rw, parent, srkAuth, cfg.DevIDPub, cfg.DevIDPriv); err != nil {
			return fmt.Errorf("tpmdevid: load DevID key: %w", err)
		}
		akPriv, akPub, _, _, _, err := tpm2.CreateKey(rw, parent, tpm2.PCRSelection{}, srkAuth, s.akAuth, akTemplateRSA())
		if err != nil {
			return fmt.Errorf("tpmdevid: create attestation key: %w", err)
		}
		s.akPub = akPub
		if s.ak, _, err = tpm2.Load(rw, parent, srkAuth, akPub, akPriv); err != nil {
			return fmt.Errorf("tpmdevid: load attestation key: %w", err)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	s.ek, _, _, _, _, _, err = tpm2.CreatePrimaryEx(rw, tpm2.HandleEndorsement, tpm2.PCRSelection{}, cfg.EndorsementPassword, "", EKTemplateRSA())
	if err != nil {
		return nil, fmt.Errorf("tpmdevid: create endorsement key: %w", err)
	}
	return s, nil
}

// withSRK runs f with a primary storage key made from tmpl.
func (s *session) withSRK(tmpl tpm2.Public, auth string, f func(tpmutil.Handle) error) error {
	h, _, _, _, _, _, err := tpm2.CreatePrimaryEx(s.rw, tpm2.HandleOwner, tpm2.PCRSelection{}, s.cfg.OwnerPassword, auth, tmpl)
	if err != nil {
		return fmt.Errorf("tpmdevid: create storage root key: %w", err)
	}
	defer func() { _ = tpm2.FlushContext(s.rw, h) }()
	return f(h)
}

// Close flushes the loaded objects and closes the TPM.
func (s *session) Close() {
	for _, h := range []tpmutil.Handle{s.devID, s.ak, s.ek} {
		if h != 0 {
			_ = tpm2.FlushContext(s.rw, h)
		}
	}
	s.devID, s.ak, s.ek = 0, 0, 0
	_ = s.rw.Close()
}

// ekCert reads the EK certificate from its NV index, without the
// trailing bytes some TPMs keep after the DER.
func (s *session) ekCert() ([]byte, error) {
	b, err := tpm2.NVRead(s.rw, EKCertificateHandleRSA)
	if err != nil {
		return nil, fmt.Errorf("tpmdevid: read NV index %08x: %w", EKCertificateHandleRSA, err)
	}
	var v asn1.RawValue
	if _, err := asn1.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("tpmdevid: EK certificate in %08x: %w", EKCertificateHandleRSA, err)
	}
	return v.FullBytes, nil
}

// ekPub returns the EK's public area in TPM wire format.
func (s *session) ekPub() ([]byte, error) {
	pub, _, _, err := tpm2.ReadPublic(s.rw, s.ek)
	if err != nil {
		return nil, fmt.Errorf("tpmdevid: read EK public: %w", err)
	}
	return pub.Encode()
}

// certifyDevID has the AK certify the DevID key: a TPMS_ATTEST and its
// TPMT_SIGNATURE.
func (s *session) certifyDevID() (attest, sig []byte, err error) {
	attest, sig, err = tpm2.Certify(s.rw, s.cfg.DevIDPassword, s.akAuth, s.devID, s.ak, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("tpmdevid: certify DevID key: %w", err)
	}
	return attest, sig, nil
}

// signDevID signs data with the DevID key: PKCS#1 v1.5 for RSA, ASN.1
// (r, s) for ECDSA, as x509.Certificate.CheckSignature expects.
func (s *session) signDevID(data []byte) ([]byte, error) {
	digest, ticket, err := tpm2.Hash(s.rw, s.devIDHash, data, tpm2.HandleOwner)
	if err != nil {
		return nil, fmt.Errorf("tpmdevid: hash nonce: %w", err)
	}
	sig, err := tpm2.Sign(s.rw, s.devID, s.cfg.DevIDPassword, digest, ticket, nil)
	if err != nil {
		return nil, fmt.Errorf("tpmdevid: sign nonce: %w", err)
	}
	switch {
	case sig.RSA != nil:
		return sig.RSA.Signature, nil
	case sig.ECC != nil:
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1BigInt(sig.ECC.R)
			b.AddASN1BigInt(sig.ECC.S)
		})
		return b.Bytes()
	default:
		return nil, errors.New("tpmdevid: unrecognised TPM signature")
	}
}

// activate runs TPM2_ActivateCredential with the AK and the EK (which
// needs a PolicySecret(endorsement) session).
func (s *session) activate(cred, secret []byte) ([]byte, error) {
	ps, _, err := tpm2.StartAuthSession(s.rw, tpm2.HandleNull, tpm2.HandleNull, make([]byte, 16), nil, tpm2.SessionPolicy, tpm2.AlgNull, tpm2.AlgSHA256)
	if err != nil {
		return nil, fmt.Errorf("tpmdevid: start policy session: %w", err)
	}
	if _, _, err := tpm2.PolicySecret(s.rw, tpm2.HandleEndorsement, tpm2.AuthCommand{Session: tpm2.HandlePasswordSession, Auth: []byte(s.cfg.EndorsementPassword)}, ps, nil, nil, nil, 0); err != nil {
		_ = tpm2.FlushContext(s.rw, ps)
		return nil, fmt.Errorf("tpmdevid: policy secret: %w", err)
	}
	out, err := tpm2.ActivateCredentialUsingAuth(s.rw, []tpm2.AuthCommand{
		{Session: tpm2.HandlePasswordSession, Auth: []byte(s.akAuth)},
		{Session: ps},
	}, s.ak, s.ek, cred, secret)
	if err != nil {
		_ = tpm2.FlushContext(s.rw, ps)
		return nil, fmt.Errorf("tpmdevid: activate credential: %w", err)
	}
	return out, nil
}
