package x509pop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"slices"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/clock"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"go.step.sm/crypto/pemutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ServerPluginData is the server's plugin_data, with SPIRE's names. Only
// SPIRE's default mode, external_pki, is supported.
type ServerPluginData struct {
	Mode              string   `hcl:"mode,optional"`
	CABundlePath      string   `hcl:"ca_bundle_path,optional"`
	CABundlePaths     []string `hcl:"ca_bundle_paths,optional"`
	AgentPathTemplate string   `hcl:"agent_path_template,optional"`
	MaxIntermediates  *int     `hcl:"max_intermediates,optional"`
	MaxRSAKeySize     *int     `hcl:"max_rsa_key_size,optional"`
}

// Config configures the server half.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// Roots are the trusted CA certificates.
	Roots []*x509.Certificate
	// AgentPathTemplate is SPIRE's agent_path_template; empty: the
	// default.
	AgentPathTemplate string
	// MaxIntermediates and MaxRSAKeySize; zero: SPIRE's defaults.
	MaxIntermediates, MaxRSAKeySize int
	// Clock validates the chain; default the real clock.
	Clock clock.Clock
	// Rand draws the nonces; default crypto/rand.
	Rand io.Reader
}

// ConfigFromPluginData loads the CA bundle(s) that d names, as SPIRE does
// (exactly one of ca_bundle_path and ca_bundle_paths).
func ConfigFromPluginData(td spiffeid.TrustDomain, d ServerPluginData) (Config, error) {
	if d.Mode != "" && d.Mode != "external_pki" {
		return Config{}, fmt.Errorf("x509pop: mode %q is not supported (only external_pki)", d.Mode)
	}
	paths := d.CABundlePaths
	switch {
	case d.CABundlePath != "" && len(d.CABundlePaths) > 0:
		return Config{}, errors.New("x509pop: only one of ca_bundle_path or ca_bundle_paths can be configured, not both")
	case d.CABundlePath != "":
		paths = []string{d.CABundlePath}
	case len(paths) == 0:
		return Config{}, errors.New("x509pop: one of ca_bundle_path or ca_bundle_paths must be configured")
	}
	cfg := Config{TrustDomain: td, AgentPathTemplate: d.AgentPathTemplate}
	for _, p := range paths {
		certs, err := LoadCertificates(p)
		if err != nil {
			return Config{}, fmt.Errorf("x509pop: unable to load trust bundle %q: %w", p, err)
		}
		cfg.Roots = append(cfg.Roots, certs...)
	}
	for _, lim := range []struct {
		name string
		v    *int
		dst  *int
	}{{"max_intermediates", d.MaxIntermediates, &cfg.MaxIntermediates}, {"max_rsa_key_size", d.MaxRSAKeySize, &cfg.MaxRSAKeySize}} {
		if lim.v == nil {
			continue
		}
		if *lim.v <= 0 {
			return Config{}, fmt.Errorf("x509pop: %s must be greater than 0", lim.name)
		}
		*lim.dst = *lim.v
	}
	return cfg, nil
}

// LoadCertificates reads every PEM CERTIFICATE block of the file at path;
// it fails on a file without one.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("x509pop: %w", err)
	}
	certs, err := pemutil.ParseCertificateBundle(b)
	if pe := (*pemutil.InvalidPEMError)(nil); errors.As(err, &pe) && pe.Err == nil {
		return nil, fmt.Errorf("x509pop: %s: no PEM certificates", path)
	}
	if err != nil {
		return nil, fmt.Errorf("x509pop: %s: %w", path, err)
	}
	return certs, nil
}

// Attestor is the server half. Its errors are gRPC statuses with SPIRE's
// codes and messages.
type Attestor struct {
	cfg   Config
	roots *x509.CertPool
	tmpl  *PathTemplate
}

// NewAttestor returns the server half.
func NewAttestor(cfg Config) (*Attestor, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("x509pop: trust domain is required")
	}
	if len(cfg.Roots) == 0 {
		return nil, errors.New("x509pop: at least one trusted CA certificate is required")
	}
	tmpl, err := ParsePathTemplate(cfg.AgentPathTemplate)
	if err != nil {
		return nil, err
	}
	if cfg.MaxIntermediates <= 0 {
		cfg.MaxIntermediates = DefaultMaxIntermediates
	}
	if cfg.MaxRSAKeySize <= 0 {
		cfg.MaxRSAKeySize = DefaultMaxRSAKeySize
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	roots := x509.NewCertPool()
	for _, c := range cfg.Roots {
		roots.AddCert(c)
	}
	return &Attestor{cfg: cfg, roots: roots, tmpl: tmpl}, nil
}

// Type returns "x509pop".
func (a *Attestor) Type() string { return Type }

// CheckPayload refuses a payload over MaxPayload before anything else.
func (a *Attestor) CheckPayload(payload []byte) error {
	if n := len(payload); n > MaxPayload {
		return status.Errorf(codes.InvalidArgument, "x509pop: payload is %d bytes, longer than the limit of %d", n, MaxPayload)
	}
	return nil
}

// Attest verifies the chain, challenges the agent to sign a fresh nonce
// with the leaf's key, and returns SPIRE's agent ID and selectors. An
// x509pop agent may attest again (CanReattest), as in SPIRE.
func (a *Attestor) Attest(ctx context.Context, req attest.NodeRequest) (attest.NodeResult, error) {
	if err := a.CheckPayload(req.Payload); err != nil {
		return attest.NodeResult{}, err
	}
	if len(req.Payload) == 0 {
		return attest.NodeResult{}, status.Error(codes.InvalidArgument, "missing attestation payload")
	}
	leaf, chains, err := a.verify(req.Payload)
	if err != nil {
		return attest.NodeResult{}, err
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		// SPIRE answers Internal here (its challenge generation fails).
		return attest.NodeResult{}, status.Error(codes.Internal, "unable to generate challenge: certificate not intended for digital signature use")
	}
	ch, err := a.challenge(leaf.PublicKey)
	if err != nil {
		return attest.NodeResult{}, err
	}
	chb, err := json.Marshal(ch)
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.Internal, "unable to marshal challenge: %v", err)
	}
	if req.Challenge == nil {
		return attest.NodeResult{}, status.Error(codes.Internal, "x509pop: no challenge channel")
	}
	respb, err := req.Challenge(ctx, chb)
	if err != nil {
		return attest.NodeResult{}, err
	}
	if len(respb) > MaxResponse {
		return attest.NodeResult{}, status.Errorf(codes.InvalidArgument, "x509pop: challenge response is %d bytes, longer than the limit of %d", len(respb), MaxResponse)
	}
	resp, err := ParseResponse(respb)
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.InvalidArgument, "unable to unmarshal challenge response: %v", err)
	}
	if err := VerifyResponse(leaf.PublicKey, ch, resp); err != nil {
		return attest.NodeResult{}, status.Errorf(codes.PermissionDenied, "challenge response verification failed: %v", err)
	}
	id, err := a.tmpl.AgentID(a.cfg.TrustDomain, leaf)
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.Internal, "failed to make spiffe id: %v", err)
	}
	return attest.NodeResult{AgentID: id, Selectors: Selectors(a.cfg.TrustDomain, leaf, chains), CanReattest: true}, nil
}

// verify parses the payload's chain and verifies it against the roots at
// the clock's time, for any extended key usage (as SPIRE).
func (a *Attestor) verify(payload []byte) (*x509.Certificate, [][]*x509.Certificate, error) {
	data, err := ParsePayload(payload)
	if err != nil {
		return nil, nil, status.Errorf(codes.InvalidArgument, "failed to unmarshal data: %v", err)
	}
	if len(data.Certificates) == 0 {
		return nil, nil, status.Error(codes.InvalidArgument, "no certificate to attest")
	}
	if len(data.Certificates)-1 > a.cfg.MaxIntermediates {
		return nil, nil, status.Error(codes.InvalidArgument, "too many intermediate certificates")
	}
	leaf, err := x509.ParseCertificate(data.Certificates[0])
	if err != nil {
		return nil, nil, status.Errorf(codes.InvalidArgument, "unable to parse leaf certificate: %v", err)
	}
	if !a.rsaSizeOK(leaf) {
		return nil, nil, status.Error(codes.InvalidArgument, "leaf certificate key size too large")
	}
	inter := x509.NewCertPool()
	for i, der := range data.Certificates[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, status.Errorf(codes.InvalidArgument, "unable to parse intermediate certificate %d: %v", i, err)
		}
		if !a.rsaSizeOK(c) {
			return nil, nil, status.Errorf(codes.InvalidArgument, "intermediate certificate %d key size too large", i)
		}
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Intermediates: inter,
		Roots:         a.roots,
		CurrentTime:   a.cfg.Clock.Now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, nil, status.Errorf(codes.PermissionDenied, "certificate verification failed: %v", err)
	}
	return leaf, chains, nil
}

func (a *Attestor) rsaSizeOK(c *x509.Certificate) bool {
	k, ok := c.PublicKey.(*rsa.PublicKey)
	return !ok || k.N.BitLen() <= a.cfg.MaxRSAKeySize
}

// challenge draws a fresh nonce for the leaf's key type.
func (a *Attestor) challenge(pub any) (*Challenge, error) {
	nonce := make([]byte, NonceSize)
	if _, err := io.ReadFull(a.cfg.Rand, nonce); err != nil {
		return nil, status.Errorf(codes.Internal, "unable to generate challenge: %v", err)
	}
	switch pub.(type) {
	case *rsa.PublicKey:
		return &Challenge{RSASignature: &NonceChallenge{Nonce: nonce}}, nil
	case *ecdsa.PublicKey:
		return &Challenge{ECDSASignature: &NonceChallenge{Nonce: nonce}}, nil
	default:
		return nil, status.Errorf(codes.Internal, "unable to generate challenge: unsupported public key type %T", pub)
	}
}

// VerifyResponse checks resp against the challenge ch and the leaf's
// public key.
func VerifyResponse(pub any, ch *Challenge, resp *Response) error {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		if ch.RSASignature == nil {
			return errors.New("expecting RSA challenge")
		}
		if resp.RSASignature == nil {
			return errors.New("expecting RSA response")
		}
		digest, err := signedDigest(ch.RSASignature.Nonce, resp.RSASignature.Nonce)
		if err != nil {
			return err
		}
		if rsa.VerifyPSS(pub, crypto.SHA256, digest, resp.RSASignature.Signature, nil) != nil {
			return errors.New("RSA signature verify failed")
		}
		return nil
	case *ecdsa.PublicKey:
		if ch.ECDSASignature == nil {
			return errors.New("expecting ECDSA challenge")
		}
		if resp.ECDSASignature == nil {
			return errors.New("expecting ECDSA response")
		}
		digest, err := signedDigest(ch.ECDSASignature.Nonce, resp.ECDSASignature.Nonce)
		if err != nil {
			return err
		}
		r := new(big.Int).SetBytes(resp.ECDSASignature.R)
		s := new(big.Int).SetBytes(resp.ECDSASignature.S)
		if !ecdsa.Verify(pub, digest, r, s) {
			return errors.New("ECDSA signature verify failed")
		}
		return nil
	default:
		return fmt.Errorf("unsupported public key type %T", pub)
	}
}

// Selectors returns SPIRE's x509pop selectors, in SPIRE's order:
// subject:cn (if any), ca:fingerprint of every CA on every verified chain
// (each once), serialnumber, then san:<key>:<value> (sorted by key; SPIRE's
// order is random).
func Selectors(td spiffeid.TrustDomain, leaf *x509.Certificate, chains [][]*x509.Certificate) []*types.Selector {
	var vals []string
	if cn := leaf.Subject.CommonName; cn != "" {
		vals = append(vals, "subject:cn:"+cn)
	}
	for _, fp := range CAFingerprints(chains) {
		vals = append(vals, "ca:fingerprint:"+fp)
	}
	if leaf.SerialNumber != nil {
		vals = append(vals, "serialnumber:"+SerialNumberHex(leaf.SerialNumber))
	}
	sans := SANSelectors(td, leaf)
	keys := make([]string, 0, len(sans))
	for k := range sans {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vals = append(vals, "san:"+k+":"+sans[k])
	}
	out := make([]*types.Selector, len(vals))
	for i, v := range vals {
		out[i] = &types.Selector{Type: Type, Value: v}
	}
	return out
}
