package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// CheckFiles reads the files that Run reads before it serves, with the
// same checks, and returns the refusal Run would make: with an external
// etcd, the endpoints and client certificate policy, the client
// certificate and key (cert_file, key_file), the CA bundle (ca_file) and
// the CA key-encryption key (ca_kek_path). It connects to nothing.
// `signet server validate` calls it.
func (s *Server) CheckFiles() error {
	if len(s.cfg.Etcd.Endpoints) == 0 {
		return nil
	}
	if err := s.checkExternalEtcd(); err != nil {
		return err
	}
	if s.cfg.Etcd.CertFile != "" || s.cfg.Etcd.CAFile != "" {
		if _, err := etcdTLS(s.cfg.Etcd); err != nil {
			return err
		}
	}
	_, err := loadKEK(s.cfg.CAKEKFile)
	return err
}

// kekSetting names the KEK's setting in errors.
const kekSetting = "ca_kek_path (--ca-kek-file)"

// loadKEK reads the 32-byte key-encryption key (raw bytes) at path, which
// must not be readable by group or others.
func loadKEK(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("server: servers sharing an external etcd keep the CA keys there, sealed with a key-encryption key: set ca_kek_path / --ca-kek-file to a file of 32 random bytes shared by the replicas (e.g. `head -c32 /dev/urandom > kek`)")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("server: CA key-encryption key %s %s: %w (create it once with `head -c32 /dev/urandom > %s && chmod 600 %s` and copy the same file to every replica)",
			kekSetting, path, err, path, path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("server: CA key-encryption key %s %s is readable by group or others (mode %v); chmod 600 it (and chown it to the user that runs signet)",
			kekSetting, path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server: CA key-encryption key %s %s: %w (make it readable by the user that runs signet, mode 0600)", kekSetting, path, err)
	}
	if len(data) != 32 {
		return nil, fmt.Errorf("server: CA key-encryption key %s %s has %d bytes, want 32 raw bytes (`head -c32 /dev/urandom > %s`; with a CA already sealed in etcd, restore the original file instead)",
			kekSetting, path, len(data), path)
	}
	return data, nil
}

// etcdTLS builds the client TLS configuration for an external etcd. Each
// file is read on its own, so that an error names its setting and path.
func etcdTLS(c EtcdConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CertFile != "" || c.KeyFile != "" {
		if c.CertFile == "" || c.KeyFile == "" {
			return nil, errors.New("server: etcd client certificate: set both cert_file (--etcd-cert) and key_file (--etcd-key) in the etcd block, or neither")
		}
		certPEM, err := readPEMFile("etcd client certificate", "cert_file (--etcd-cert)", c.CertFile, "CERTIFICATE")
		if err != nil {
			return nil, err
		}
		keyPEM, err := readPEMFile("etcd client key", "key_file (--etcd-key)", c.KeyFile, "PRIVATE KEY")
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("server: etcd client certificate cert_file (--etcd-cert) %s and key_file (--etcd-key) %s: %w (the key must be the certificate's)", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if c.CAFile != "" {
		data, err := readPEMFile("etcd CA", "ca_file (--etcd-ca)", c.CAFile, "CERTIFICATE")
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("server: etcd CA ca_file (--etcd-ca) %s holds no parsable PEM certificates: put the CA certificate(s) that signed etcd's serving certificate there", c.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// readPEMFile reads path and checks that it holds a PEM block whose type
// ends in kind ("CERTIFICATE", or "PRIVATE KEY" for PKCS#8, EC and RSA
// keys); certificates must parse.
func readPEMFile(what, setting, path, kind string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server: %s %s %s: %w (fix the path in the etcd block, or make the file readable by the user that runs signet)", what, setting, path, err)
	}
	rest, found := data, false
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if !strings.HasSuffix(b.Type, kind) {
			continue
		}
		if kind == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				return nil, fmt.Errorf("server: %s %s %s: a CERTIFICATE block does not parse: %w", what, setting, path, err)
			}
		}
		found = true
	}
	if !found {
		return nil, fmt.Errorf("server: %s %s %s holds no PEM %s block: it must be a PEM file (-----BEGIN %s-----)", what, setting, path, kind, kind)
	}
	return data, nil
}
