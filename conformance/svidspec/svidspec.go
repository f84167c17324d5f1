// Package svidspec checks credentials field by field against the SPIFFE
// X509-SVID and JWT-SVID specifications. Tests use it on everything Signet
// issues, whichever path issued it.
package svidspec

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// CheckX509SVID checks a leaf X.509-SVID (chain[0]) and any intermediates
// that follow it.
func CheckX509SVID(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("svidspec: empty chain")
	}
	leaf := chain[0]
	if len(leaf.URIs) != 1 {
		return fmt.Errorf("svidspec: leaf has %d URI SANs, want exactly 1", len(leaf.URIs))
	}
	id, err := spiffeid.FromURI(leaf.URIs[0])
	if err != nil {
		return fmt.Errorf("svidspec: leaf URI SAN: %w", err)
	}
	if id.Path() == "" {
		return errors.New("svidspec: leaf SPIFFE ID has no path")
	}
	if !leaf.BasicConstraintsValid || leaf.IsCA {
		return errors.New("svidspec: leaf must have basicConstraints cA=false")
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return errors.New("svidspec: leaf key usage lacks digitalSignature")
	}
	if leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return errors.New("svidspec: leaf key usage must not include keyCertSign or cRLSign")
	}
	if !extensionCritical(leaf, oidKeyUsage) {
		return errors.New("svidspec: leaf key usage extension must be critical")
	}
	var server, client bool
	for _, u := range leaf.ExtKeyUsage {
		server = server || u == x509.ExtKeyUsageServerAuth
		client = client || u == x509.ExtKeyUsageClientAuth
	}
	if !server || !client {
		return errors.New("svidspec: leaf EKU must include serverAuth and clientAuth")
	}
	for i, c := range chain[1:] {
		if err := CheckCA(c); err != nil {
			return fmt.Errorf("svidspec: intermediate %d: %w", i+1, err)
		}
	}
	return nil
}

// CheckCA checks a signing certificate (root or intermediate).
func CheckCA(c *x509.Certificate) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return errors.New("svidspec: CA must have basicConstraints cA=true")
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("svidspec: CA key usage lacks keyCertSign")
	}
	if !extensionCritical(c, oidKeyUsage) {
		return errors.New("svidspec: CA key usage extension must be critical")
	}
	for _, u := range c.URIs {
		id, err := spiffeid.FromURI(u)
		if err != nil {
			return fmt.Errorf("svidspec: CA URI SAN: %w", err)
		}
		if id.Path() != "" {
			return fmt.Errorf("svidspec: CA SPIFFE ID %q must have no path", id)
		}
	}
	return nil
}

var oidKeyUsage = []int{2, 5, 29, 15}

func extensionCritical(c *x509.Certificate, oid []int) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return e.Critical
		}
	}
	return false
}

// allowedAlgs are the JWS algorithms the JWT-SVID spec permits.
var allowedAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"PS256": true, "PS384": true, "PS512": true,
}

// CheckJWTSVID checks the structure of a compact JWT-SVID (not its
// signature): header members, sub, aud and exp.
func CheckJWTSVID(token string) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return fmt.Errorf("svidspec: JWT has %d parts, want 3", len(parts))
	}
	var hdr map[string]any
	if err := decodePart(parts[0], &hdr); err != nil {
		return fmt.Errorf("svidspec: JWT header: %w", err)
	}
	for k := range hdr {
		switch k {
		case "alg", "kid", "typ":
		default:
			return fmt.Errorf("svidspec: JWT header has member %q; only alg, kid and typ are allowed", k)
		}
	}
	alg, _ := hdr["alg"].(string)
	if !allowedAlgs[alg] {
		return fmt.Errorf("svidspec: JWT alg %q is not allowed", alg)
	}
	if typ, ok := hdr["typ"]; ok && typ != "JWT" && typ != "JOSE" {
		return fmt.Errorf("svidspec: JWT typ %v must be JWT or JOSE", typ)
	}
	var claims map[string]any
	if err := decodePart(parts[1], &claims); err != nil {
		return fmt.Errorf("svidspec: JWT claims: %w", err)
	}
	sub, _ := claims["sub"].(string)
	id, err := spiffeid.FromString(sub)
	if err != nil {
		return fmt.Errorf("svidspec: JWT sub: %w", err)
	}
	if id.Path() == "" {
		return errors.New("svidspec: JWT sub has no path")
	}
	switch aud := claims["aud"].(type) {
	case string:
		if aud == "" {
			return errors.New("svidspec: JWT aud is empty")
		}
	case []any:
		if len(aud) == 0 {
			return errors.New("svidspec: JWT aud is empty")
		}
	default:
		return errors.New("svidspec: JWT aud is missing")
	}
	if _, ok := claims["exp"].(float64); !ok {
		return errors.New("svidspec: JWT exp is missing")
	}
	return nil
}

func decodePart(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
