package issuer

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/signet-id/signet/pq/altsig"
	pqjwt "github.com/signet-id/signet/pq/jwt"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/purecert"
)

// AltAuthority is implemented by authorities of the hybrid profile: the
// active X.509 CA and JWT key each have an ML-DSA companion key.
type AltAuthority interface {
	X509AltKey() crypto.Signer
	JWTAltKey() (kid string, signer crypto.Signer)
}

// CSRInfo is what the issuer takes from a certificate request.
type CSRInfo struct {
	// PublicKey is the subject key (classical, or *mldsa.PublicKey for a
	// pure ML-DSA request).
	PublicKey crypto.PublicKey
	// AltPublicKey is the ML-DSA key the requester put in a
	// subjectAltPublicKeyInfo extension request (hybrid profile).
	AltPublicKey *mldsa.PublicKey
	Request      *x509.CertificateRequest
}

// ParseCSRInfo parses a classical or pure ML-DSA PKCS#10 request, checks its
// self-signature, and extracts a requested subjectAltPublicKeyInfo.
func ParseCSRInfo(der []byte) (*CSRInfo, error) {
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
	info := &CSRInfo{Request: csr}
	if _, err := mldsa.ParsePKIXPublicKey(csr.RawSubjectPublicKeyInfo); err == nil {
		pub, err := purecert.CheckCertificateRequest(csr)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidCSR, err)
		}
		info.PublicKey = pub
		return info, nil
	}
	if csr.PublicKeyAlgorithm == x509.UnknownPublicKeyAlgorithm {
		return nil, fmt.Errorf("%w: unsupported public key algorithm", ErrInvalidCSR)
	} else {
		if err := csr.CheckSignature(); err != nil {
			return nil, fmt.Errorf("%w: CSR signature check failed: %w", ErrInvalidCSR, err)
		}
		if err := checkPublicKey(csr.PublicKey); err != nil {
			return nil, err
		}
		info.PublicKey = csr.PublicKey
	}
	for _, e := range csr.Extensions {
		if e.Id.Equal(altsig.OIDSubjectAltPublicKeyInfo) {
			// A requested ML-DSA key must come with proof of possession.
			alt, err := altsig.CheckCertificateRequest(csr)
			if err != nil {
				return nil, fmt.Errorf("%w: ML-DSA subjectAltPublicKeyInfo: %w", ErrInvalidCSR, err)
			}
			info.AltPublicKey = alt
		}
	}
	return info, nil
}

// signLeaf signs tmpl with the CA in the way its profile requires.
func (i *Issuer) signLeaf(tmpl, caCert *x509.Certificate, caKey crypto.Signer, p X509Params) ([]byte, error) {
	if _, pq := caKey.(*mldsa.PrivateKey); pq {
		pub, ok := p.PublicKey.(*mldsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: the trust domain uses the pq profile; the request must carry an ML-DSA public key, not %T", ErrInvalidCSR, p.PublicKey)
		}
		return purecert.CreateCertificate(i.cfg.Rand, tmpl, caCert, pub, caKey)
	}
	if alt, ok := i.cfg.Authority.(AltAuthority); ok {
		if altKey := alt.X509AltKey(); altKey != nil {
			if p.AltPublicKey == nil {
				return nil, fmt.Errorf("%w: the trust domain uses the hybrid profile; the request must carry an ML-DSA-44 subjectAltPublicKeyInfo extension", ErrInvalidCSR)
			}
			return altsig.CreateCertificate(i.cfg.Rand, tmpl, caCert, p.PublicKey, caKey, altKey, p.AltPublicKey)
		}
	}
	if _, ok := p.PublicKey.(*mldsa.PublicKey); ok {
		return nil, fmt.Errorf("%w: ML-DSA subject keys need the pq profile", ErrInvalidCSR)
	}
	return x509.CreateCertificate(i.cfg.Rand, tmpl, caCert, p.PublicKey, caKey)
}

// signJWT signs claims in the way the profile of the active key requires:
// ES256; ES256 plus the ML-DSA private claim (hybrid); or ML-DSA (pq).
func (i *Issuer) signJWT(claims map[string]any) (string, error) {
	kid, key := i.cfg.Authority.JWTKey()
	if key == nil {
		return "", fmt.Errorf("issuer: no active JWT key")
	}
	if _, pq := key.(*mldsa.PrivateKey); pq {
		return pqjwt.SignPQ(claims, key, kid)
	}
	if alt, ok := i.cfg.Authority.(AltAuthority); ok {
		if akid, akey := alt.JWTAltKey(); akey != nil {
			return pqjwt.SignHybrid(claims, key, kid, akey, akid)
		}
	}
	return pqjwt.SignClassic(claims, key, kid)
}

// jwtClaims are a JWT-SVID's claims; iss only when configured.
func jwtClaims(iss, sub string, aud []string, exp, iat time.Time) map[string]any {
	var a any = aud
	if len(aud) == 1 {
		a = aud[0]
	}
	c := map[string]any{"sub": sub, "aud": a, "exp": exp.Unix(), "iat": iat.Unix()}
	if iss != "" {
		c["iss"] = iss
	}
	return c
}
