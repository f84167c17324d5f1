package issuer

import (
	"crypto/x509"
	"fmt"
)

// MaxCSRSize bounds the CSRs the issuer parses.
const MaxCSRSize = 64 << 10

// ParseCSR parses a DER PKCS#10 request and checks its self-signature. The
// subject and SANs of the CSR are ignored by the issuer: the SVID's identity
// comes from the registration entry, never from the requester.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: CSR is empty", ErrInvalidCSR)
	}
	if len(der) > MaxCSRSize {
		return nil, fmt.Errorf("%w: CSR is %d bytes, more than the %d allowed", ErrInvalidCSR, len(der), MaxCSRSize)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed CSR: %w", ErrInvalidCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: CSR signature check failed: %w", ErrInvalidCSR, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	return csr, nil
}
