package awsiid

import (
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"fmt"

	"github.com/signet-id/signet/attest/x509pop"
)

// AWS's public instance identity certificates, as SPIRE v1.13.3 builds
// them in: one PEM block per region with a "Region" header; the RSA-1024
// set has a "default" block for regions without their own.
var (
	//go:embed awsca/rsa2048.pem
	builtinRSA2048 []byte
	//go:embed awsca/rsa1024.pem
	builtinRSA1024 []byte
)

// defaultRegion is the RSA-1024 certificate of regions without their own.
const defaultRegion = "default"

// Certs maps a region to the certificates that may sign its documents.
type Certs map[string][]*x509.Certificate

// BuiltinRSA2048 returns AWS's RSA-2048 certificates by region.
func BuiltinRSA2048() Certs { return mustParseRegional(builtinRSA2048) }

// BuiltinRSA1024 returns AWS's RSA-1024 certificates by region, with the
// "default" entry.
func BuiltinRSA1024() Certs { return mustParseRegional(builtinRSA1024) }

func mustParseRegional(b []byte) Certs {
	out := Certs{}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			panic(fmt.Sprintf("awsiid: built-in certificate of %q: %v", blk.Headers["Region"], err))
		}
		r := blk.Headers["Region"]
		out[r] = append(out[r], c)
	}
}

// lookup returns the certificates of region: its own, else (useDefault)
// the default entry.
func (c Certs) lookup(region string, useDefault bool) []*x509.Certificate {
	if cs, ok := c[region]; ok {
		return cs
	}
	if useDefault {
		return c[defaultRegion]
	}
	return nil
}

// loadRegional reads, for each region, every certificate of its PEM file.
func loadRegional(paths map[string]string) (Certs, error) {
	out := Certs{}
	for region, p := range paths {
		cs, err := x509pop.LoadCertificates(p)
		if err != nil {
			return nil, fmt.Errorf("awsiid: certificates of region %q: %w", region, err)
		}
		out[region] = cs
	}
	return out, nil
}
