package etcdserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// MemberTLS names the PEM files a cluster member serves and dials with:
// one certificate (server and client use, 127.0.0.1 and localhost) of a
// CA generated for the cluster. Peers and clients must present a
// certificate of that CA.
type MemberTLS struct {
	CAFile   string
	CertFile string
	KeyFile  string
}

// NewClusterTLS generates a cluster CA and a member certificate into dir
// (created 0700; keys written 0600, the CA key is not kept).
func NewClusterTLS(dir string) (*MemberTLS, error) {
	dir, err := privateDir(dir)
	if err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: cluster CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "signet etcd cluster CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: cluster CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: cluster CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: member key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "signet etcd member"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: member certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: member key: %w", err)
	}
	m := &MemberTLS{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "member.pem"),
		KeyFile:  filepath.Join(dir, "member-key.pem"),
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{m.CAFile, "CERTIFICATE", caDER}, {m.CertFile, "CERTIFICATE", der}, {m.KeyFile, "PRIVATE KEY", keyDER}} {
		if err := writePrivate(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der})); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func writePrivate(path string, b []byte) error {
	_ = os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("etcdserver: write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("etcdserver: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("etcdserver: write %s: %w", path, err)
	}
	return nil
}

// apply sets a member's client and peer listeners to serve the member
// certificate and require client certificates of the cluster CA.
func (m *MemberTLS) apply(ec *embed.Config) {
	ec.ClientTLSInfo.CertFile, ec.ClientTLSInfo.KeyFile = m.CertFile, m.KeyFile
	ec.ClientTLSInfo.TrustedCAFile, ec.ClientTLSInfo.ClientCertAuth = m.CAFile, true
	ec.PeerTLSInfo.CertFile, ec.PeerTLSInfo.KeyFile = m.CertFile, m.KeyFile
	ec.PeerTLSInfo.TrustedCAFile, ec.PeerTLSInfo.ClientCertAuth = m.CAFile, true
}

// ClientConfig returns a client TLS configuration that presents the
// member certificate and trusts only the cluster CA.
func (m *MemberTLS) ClientConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(m.CertFile, m.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: member certificate: %w", err)
	}
	b, err := os.ReadFile(m.CAFile)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("etcdserver: cluster CA %s holds no certificate", m.CAFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
