// Package vaultpki signs a trust domain's intermediate CA with Vault's PKI
// secrets engine (pki/root/sign-intermediate), so that Vault is the
// upstream authority of Signet's X.509 CA: the signed chain is the CA's
// chain and Vault's root goes into the trust bundle. Each rotation signs
// the next CA's CSR the same way.
//
// It is the piece a ca upstream-authority hook calls; it holds no keys.
package vaultpki

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/secrets"
)

// Config configures an Upstream.
type Config struct {
	// Client is the server's Vault client. Required.
	Client *secrets.Client
	// Mount is the PKI engine's mount path (default "pki"). The Vault
	// token needs update on <mount>/root/sign-intermediate and read on
	// <mount>/cert/ca_chain.
	Mount string
}

// Upstream signs intermediate CAs with Vault PKI.
type Upstream struct {
	client *secrets.Client
	mount  string
}

// New returns an Upstream.
func New(cfg Config) (*Upstream, error) {
	if cfg.Client == nil {
		return nil, errors.New("vaultpki: vault client is required")
	}
	if cfg.Mount == "" {
		cfg.Mount = "pki"
	}
	return &Upstream{client: cfg.Client, mount: strings.Trim(cfg.Mount, "/")}, nil
}

// Signed is the result of SignIntermediate.
type Signed struct {
	// Chain is the new intermediate CA certificate followed by Vault's
	// intermediates, if any, up to (not including) the root.
	Chain []*x509.Certificate
	// Roots are the upstream roots to publish as X.509 authorities of the
	// trust bundle.
	Roots []*x509.Certificate
}

// SignIntermediate has Vault sign csrDER (a PKCS #10 request for the
// trust domain's CA key) as an intermediate CA for td, valid for ttl. The
// certificate carries td's SPIFFE ID as its only URI SAN, as the X509-SVID
// specification requires of signing certificates.
func (u *Upstream) SignIntermediate(ctx context.Context, td spiffeid.TrustDomain, csrDER []byte, ttl time.Duration) (*Signed, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("vaultpki: parse CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("vaultpki: CSR signature: %w", err)
	}
	if ttl <= 0 {
		return nil, errors.New("vaultpki: ttl must be positive")
	}
	api, err := u.client.API(ctx)
	if err != nil {
		return nil, err
	}
	cn := csr.Subject.CommonName
	if cn == "" {
		cn = "Signet CA " + td.Name()
	}
	path := u.mount + "/root/sign-intermediate"
	sec, err := api.Logical().WriteWithContext(ctx, path, map[string]any{
		"csr":                  string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		"common_name":          cn,
		"uri_sans":             td.IDString(),
		"exclude_cn_from_sans": true,
		"ttl":                  strconv.FormatInt(int64(ttl/time.Second), 10) + "s",
		"format":               "pem",
		"use_csr_values":       false,
		"max_path_length":      0,
	})
	if err != nil {
		return nil, wrap("sign intermediate", path, err)
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("vaultpki: %s: empty response", path)
	}
	certPEM, _ := sec.Data["certificate"].(string)
	leaf, err := parseOne(certPEM)
	if err != nil {
		return nil, fmt.Errorf("vaultpki: signed certificate: %w", err)
	}
	var chain []*x509.Certificate
	switch v := sec.Data["ca_chain"].(type) {
	case []any:
		for _, p := range v {
			s, _ := p.(string)
			c, err := parseOne(s)
			if err != nil {
				return nil, fmt.Errorf("vaultpki: ca_chain: %w", err)
			}
			chain = append(chain, c)
		}
	}
	if len(chain) == 0 {
		issuing, _ := sec.Data["issuing_ca"].(string)
		c, err := parseOne(issuing)
		if err != nil {
			return nil, fmt.Errorf("vaultpki: issuing_ca: %w", err)
		}
		chain = []*x509.Certificate{c}
	}
	out := &Signed{Chain: []*x509.Certificate{leaf}}
	for _, c := range chain {
		if c.Equal(leaf) {
			continue // some Vault versions list the new certificate in ca_chain
		}
		if isSelfSigned(c) {
			out.Roots = append(out.Roots, c)
		} else {
			out.Chain = append(out.Chain, c)
		}
	}
	if len(out.Roots) == 0 {
		return nil, errors.New("vaultpki: Vault returned no root certificate in the chain; mount a root CA (pki/root/generate) or import its chain")
	}
	return out, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(c) == nil && string(c.RawIssuer) == string(c.RawSubject)
}

func parseOne(s string) (*x509.Certificate, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

func wrap(op, path string, err error) error {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		return fmt.Errorf("vaultpki: %s %s: HTTP %d: %s", op, path, re.StatusCode, strings.Join(re.Errors, "; "))
	}
	return fmt.Errorf("vaultpki: %s %s: %w", op, path, err)
}
