// Package issuer mints X.509-SVIDs and JWT-SVIDs per the SPIFFE X509-SVID and
// JWT-SVID specifications. It is pure: it works over a signing authority and
// a clock, and knows nothing of storage or transport.
package issuer

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"time"

	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/rotation/renewal"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults as in SPIRE.
const (
	DefaultX509TTL = time.Hour
	DefaultJWTTTL  = 5 * time.Minute
	// Backdate is how far before issuance an X.509-SVID's NotBefore is set,
	// to tolerate clock skew. Renewal schedules measure lifetime from
	// NotBefore+Backdate.
	Backdate = 10 * time.Second
)

// Authority is the signing material the issuer uses. It is owned by package
// ca; the issuer only reads the current active keys.
type Authority interface {
	// X509Authority returns the active X.509 CA certificate and its key.
	X509Authority() (*x509.Certificate, crypto.Signer)
	// JWTKey returns the active JWT signing key and its key ID.
	JWTKey() (kid string, signer crypto.Signer)
}

// JWTKeyExpiry is implemented by authorities whose JWT key expires: a
// JWT-SVID's exp is capped to the key's expiry, as an X.509-SVID's NotAfter
// is capped to its CA's.
type JWTKeyExpiry interface {
	JWTKeyNotAfter() time.Time
}

// IntermediateAuthority is implemented by authorities signed by an upstream
// CA: SVIDs carry the returned certificates after the leaf.
type IntermediateAuthority interface {
	X509Intermediates() []*x509.Certificate
}

// ErrInvalidCSR is returned (wrapped) for CSRs that cannot be used.
var ErrInvalidCSR = errors.New("issuer: invalid CSR")

// Config configures an Issuer.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Authority   Authority
	// X509TTL and JWTTTL are the default lifetimes when a request gives none.
	X509TTL time.Duration
	JWTTTL  time.Duration
	// JWTIssuer, if set, is the iss claim of every JWT-SVID (SPIRE's
	// jwt_issuer): the issuer URL of the OIDC discovery provider that
	// publishes the keys, so OIDC relying parties accept the tokens.
	JWTIssuer string
	// Now and Rand may be injected; they default to time.Now and crypto/rand.
	Now  func() time.Time
	Rand io.Reader
}

// Issuer mints SVIDs.
type Issuer struct {
	cfg Config
}

// New returns an Issuer.
func New(cfg Config) (*Issuer, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("issuer: trust domain is required")
	}
	if cfg.Authority == nil {
		return nil, errors.New("issuer: authority is required")
	}
	if cfg.X509TTL <= 0 {
		cfg.X509TTL = DefaultX509TTL
	}
	if cfg.JWTTTL <= 0 {
		cfg.JWTTTL = DefaultJWTTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	return &Issuer{cfg: cfg}, nil
}

// X509Params describes one X.509-SVID to mint.
type X509Params struct {
	ID        spiffeid.ID
	PublicKey crypto.PublicKey
	// TTL is the requested lifetime; zero means the default. The lifetime is
	// capped so the SVID never outlives its CA.
	TTL      time.Duration
	DNSNames []string
	// Subject overrides the default subject if non-empty.
	Subject pkix.Name
	// AltPublicKey is the subject's ML-DSA key for the hybrid profile.
	AltPublicKey *mldsa.PublicKey
}

// X509SVID mints an X.509-SVID and returns the chain: the leaf followed by
// the issuing CA certificate when that CA is not self-signed (an
// intermediate). Self-signed roots are never included; they are in the
// bundle.
func (i *Issuer) X509SVID(p X509Params) ([]*x509.Certificate, error) {
	if err := i.checkID(p.ID, false); err != nil {
		return nil, err
	}
	if _, pq := p.PublicKey.(*mldsa.PublicKey); !pq {
		if err := checkPublicKey(p.PublicKey); err != nil {
			return nil, err
		}
	}
	caCert, caKey := i.cfg.Authority.X509Authority()
	if caCert == nil || caKey == nil {
		return nil, errors.New("issuer: no active X.509 authority")
	}
	now := i.cfg.Now()
	ttl := p.TTL
	if ttl <= 0 {
		ttl = i.cfg.X509TTL
	}
	notAfter := now.Add(ttl)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, errors.New("issuer: active X.509 authority has expired")
	}
	serial, err := randomSerial(i.cfg.Rand)
	if err != nil {
		return nil, err
	}
	subject := p.Subject
	if len(subject.Names) == 0 && subject.CommonName == "" && len(subject.Organization) == 0 {
		subject = pkix.Name{Country: []string{"US"}, Organization: []string{"Signet"}}
	}
	uri := p.ID.URL()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-Backdate),
		NotAfter:              notAfter,
		URIs:                  []*url.URL{uri},
		DNSNames:              p.DNSNames,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	if len(p.DNSNames) > 0 && subject.CommonName == "" {
		tmpl.Subject.CommonName = p.DNSNames[0]
	}
	der, err := i.signLeaf(tmpl, caCert, caKey, p)
	if err != nil {
		return nil, fmt.Errorf("issuer: sign X.509-SVID: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issuer: parse minted X.509-SVID: %w", err)
	}
	chain := []*x509.Certificate{leaf}
	if ic, ok := i.cfg.Authority.(IntermediateAuthority); ok {
		if inter := ic.X509Intermediates(); len(inter) > 0 {
			return append(chain, inter...), nil
		}
	}
	if !isSelfSigned(caCert) {
		chain = append(chain, caCert)
	}
	return chain, nil
}

// JWTParams describes one JWT-SVID to mint.
type JWTParams struct {
	ID       spiffeid.ID
	Audience []string
	TTL      time.Duration
}

// JWTSVID mints a JWT-SVID and returns the compact token and its expiry. The
// header carries only alg, kid and typ, as the JWT-SVID spec requires.
func (i *Issuer) JWTSVID(p JWTParams) (string, time.Time, error) {
	if err := i.checkID(p.ID, false); err != nil {
		return "", time.Time{}, err
	}
	if len(p.Audience) == 0 {
		return "", time.Time{}, errors.New("issuer: JWT-SVID audience is required")
	}
	for _, a := range p.Audience {
		if a == "" {
			return "", time.Time{}, errors.New("issuer: JWT-SVID audience must not contain empty values")
		}
	}
	now := i.cfg.Now()
	ttl := p.TTL
	if ttl <= 0 {
		ttl = i.cfg.JWTTTL
	}
	exp := now.Add(ttl)
	if ke, ok := i.cfg.Authority.(JWTKeyExpiry); ok {
		if na := ke.JWTKeyNotAfter(); !na.IsZero() && exp.After(na) {
			exp = na
		}
		if !exp.After(now) {
			return "", time.Time{}, errors.New("issuer: active JWT key has expired")
		}
	}
	tok, err := i.signJWT(jwtClaims(i.cfg.JWTIssuer, p.ID.String(), p.Audience, exp, now))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issuer: sign JWT-SVID: %w", err)
	}
	return tok, exp.Truncate(time.Second), nil
}

// checkID verifies the SPIFFE ID belongs to the issuer's trust domain.
func (i *Issuer) checkID(id spiffeid.ID, allowRoot bool) error {
	if id.IsZero() {
		return errors.New("issuer: SPIFFE ID is required")
	}
	if id.TrustDomain() != i.cfg.TrustDomain {
		return fmt.Errorf("issuer: SPIFFE ID %q is not in trust domain %q", id, i.cfg.TrustDomain)
	}
	if !allowRoot && id.Path() == "" {
		return fmt.Errorf("issuer: SPIFFE ID %q has no path; SVIDs need a workload path", id)
	}
	return nil
}

func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize < 256 {
			return fmt.Errorf("%w: ECDSA curve %s is too weak", ErrInvalidCSR, k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("%w: RSA key of %d bits is too small", ErrInvalidCSR, k.N.BitLen())
		}
	case ed25519.PublicKey:
	case nil:
		return fmt.Errorf("%w: public key is missing", ErrInvalidCSR)
	default:
		return fmt.Errorf("%w: unsupported public key type %T", ErrInvalidCSR, pub)
	}
	return nil
}

func randomSerial(r io.Reader) (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(r, limit)
	if err != nil {
		return nil, fmt.Errorf("issuer: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// isSelfSigned reports whether c is a self-issued root: its subject is its
// issuer and it names no other authority key. It runs on every issuance, so
// it compares names instead of verifying a signature.
func isSelfSigned(c *x509.Certificate) bool {
	if !bytes.Equal(c.RawSubject, c.RawIssuer) {
		return false
	}
	return len(c.AuthorityKeyId) == 0 || bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId)
}

// RenewalTime returns the unattended renewal time (renewal.Policy.RenewAt,
// half-life) of an X.509-SVID issued by this package,
// measured from its issuance (NotBefore+Backdate, when that is before
// NotAfter) rather than from the backdated NotBefore.
func RenewalTime(c *x509.Certificate) time.Time {
	start := c.NotBefore.Add(Backdate)
	if !start.Before(c.NotAfter) {
		start = c.NotBefore
	}
	return renewal.Default().RenewAt(start, c.NotAfter)
}
