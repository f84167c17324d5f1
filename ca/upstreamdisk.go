package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.step.sm/crypto/pemutil"
)

// DiskUpstreamConfig names an operator-provided CA on disk, as SPIRE's
// UpstreamAuthority "disk" plugin_data does.
type DiskUpstreamConfig struct {
	// CertFile holds the upstream CA certificate (PEM), optionally
	// followed by the intermediates above it.
	CertFile string
	// KeyFile holds its private key (PEM: PKCS#8, EC or PKCS#1), readable
	// by its owner only.
	KeyFile string
	// BundleFile holds the roots to publish (PEM). Required when the
	// certificate is not self-signed; without it the certificate is its
	// own root.
	BundleFile string
	// Now is the time the certificates are checked against (default
	// time.Now).
	Now func() time.Time
}

// DiskUpstream is an UpstreamAuthority that signs with an operator's CA
// key read from disk.
type DiskUpstream struct {
	cert  *x509.Certificate
	chain []*x509.Certificate // above cert, towards the roots
	roots []*x509.Certificate
	key   crypto.Signer
	now   func() time.Time
}

var _ UpstreamAuthority = (*DiskUpstream)(nil)

// LoadDiskUpstream reads and checks the operator's CA: a CA certificate
// that may sign certificates, its key, and roots it chains to.
func LoadDiskUpstream(cfg DiskUpstreamConfig) (*DiskUpstream, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("ca: upstream disk: cert_file_path and key_file_path are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	certs, err := readPEMCerts(cfg.CertFile)
	if err != nil {
		return nil, fmt.Errorf("ca: upstream disk: cert_file_path: %w", err)
	}
	cert := certs[0]
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("ca: upstream disk: %s: the certificate (subject %q) is not a CA allowed to sign certificates (basic constraints CA:TRUE and key usage keyCertSign)", cfg.CertFile, cert.Subject)
	}
	if now := cfg.Now(); now.Before(cert.NotBefore) || !now.Before(cert.NotAfter) {
		return nil, fmt.Errorf("ca: upstream disk: %s: the certificate is valid from %s to %s, not now", cfg.CertFile, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := readPEMKey(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("ca: upstream disk: key_file_path: %w", err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("ca: upstream disk: the key in %s is not the key of the certificate in %s", cfg.KeyFile, cfg.CertFile)
	}
	u := &DiskUpstream{cert: cert, chain: certs[1:], key: key, now: cfg.Now}
	if cfg.BundleFile == "" {
		if cert.CheckSignatureFrom(cert) != nil {
			return nil, fmt.Errorf("ca: upstream disk: %s is not self-signed: set bundle_file_path to the roots it chains to", cfg.CertFile)
		}
		u.roots = []*x509.Certificate{cert}
		return u, nil
	}
	if u.roots, err = readPEMCerts(cfg.BundleFile); err != nil {
		return nil, fmt.Errorf("ca: upstream disk: bundle_file_path: %w", err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range u.roots {
		roots.AddCert(r)
	}
	for _, c := range u.chain {
		inter.AddCert(c)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: cfg.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("ca: upstream disk: %s does not chain to the roots in %s: %w", cfg.CertFile, cfg.BundleFile, err)
	}
	return u, nil
}

// SignIntermediate implements UpstreamAuthority: it signs csrDER as the
// trust domain's CA, valid for ttl but never beyond the upstream
// certificate.
func (u *DiskUpstream) SignIntermediate(_ context.Context, td spiffeid.TrustDomain, csrDER []byte, ttl time.Duration) (chain, roots []*x509.Certificate, err error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: upstream disk: parse CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, fmt.Errorf("ca: upstream disk: CSR signature: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("ca: upstream disk: serial: %w", err)
	}
	now := u.now()
	notAfter := now.Add(ttl)
	if notAfter.After(u.cert.NotAfter) {
		notAfter = u.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               csr.Subject,
		NotBefore:             now.Add(-10 * time.Second),
		NotAfter:              notAfter,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: td.Name()}},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, u.cert, csr.PublicKey, u.key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: upstream disk: sign: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: upstream disk: %w", err)
	}
	chain = []*x509.Certificate{c}
	if u.cert.CheckSignatureFrom(u.cert) != nil {
		chain = append(chain, u.cert) // an intermediate: SVIDs carry it
	}
	chain = append(chain, u.chain...)
	return chain, u.roots, nil
}

func readPEMCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := pemutil.ParseCertificateBundle(data)
	if pe := (*pemutil.InvalidPEMError)(nil); errors.As(err, &pe) && pe.Err == nil {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

func readPEMKey(path string) (crypto.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group or others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s holds no PEM private key", path)
	}
	var k any
	switch b.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: a %T key cannot sign", path, k)
	}
	return s, nil
}
