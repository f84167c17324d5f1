package verify

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/signet-id/signet/pq/altsig"
	"github.com/signet-id/signet/pq/purecert"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// X509-SVID shape errors (SPIFFE X509-SVID §4, §5). They come wrapped in a
// *CertError naming the certificate, and each also matches ErrNotSVID.
var (
	// ErrNotSVID matches every shape error below.
	ErrNotSVID = errors.New("verify: not an X509-SVID")
	// ErrLeafIsCA: the leaf has basicConstraints cA=true (e.g. a CA or the
	// bundle root presented as a workload SVID).
	ErrLeafIsCA = errors.New("verify: leaf is a CA certificate (cA=true)")
	// ErrLeafKeyUsage: the leaf lacks digitalSignature or has keyCertSign
	// or cRLSign.
	ErrLeafKeyUsage = errors.New("verify: leaf key usage is not that of an X509-SVID")
	// ErrLeafID: the leaf does not carry exactly one spiffe:// URI SAN with
	// a non-empty path.
	ErrLeafID = errors.New("verify: leaf does not carry exactly one SPIFFE ID with a path")
	// ErrIntermediateNotCA: a certificate above the leaf is not a CA.
	ErrIntermediateNotCA = errors.New("verify: intermediate is not a CA certificate")
	// ErrDowngrade: the roots publish post-quantum keys (hybrid or pure
	// trust domain) but the chain is not protected by ML-DSA signatures
	// end to end, e.g. its alternative signatures were stripped and the
	// certificates re-signed classically. Options.AllowClassical accepts
	// such chains as classic SVIDs.
	ErrDowngrade = errors.New("verify: trust domain is post-quantum but the chain is not PQ-protected (downgrade); allow classical chains explicitly to accept it")
)

// shapeError wraps a shape sentinel so that it matches ErrNotSVID too.
func shapeError(c *x509.Certificate, i int, sentinel error, detail string) error {
	return &CertError{Index: i, Subject: c.Subject.String(), Err: fmt.Errorf("%w: %w: %s", ErrNotSVID, sentinel, detail)}
}

// CheckSVIDShape applies the X509-SVID rules to a presented chain (leaf
// first): the leaf has cA=false, digitalSignature and neither keyCertSign
// nor cRLSign, and exactly one spiffe:// URI SAN with a non-empty path;
// every further certificate is a CA. It returns the leaf's SPIFFE ID.
func CheckSVIDShape(chain []*x509.Certificate) (spiffeid.ID, error) {
	if len(chain) == 0 {
		return spiffeid.ID{}, ErrEmptyChain
	}
	leaf := chain[0]
	if leaf.IsCA {
		return spiffeid.ID{}, shapeError(leaf, 0, ErrLeafIsCA, "an X509-SVID leaf must have cA=false")
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return spiffeid.ID{}, shapeError(leaf, 0, ErrLeafKeyUsage, "digitalSignature is not set")
	}
	if leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return spiffeid.ID{}, shapeError(leaf, 0, ErrLeafKeyUsage, "keyCertSign or cRLSign is set")
	}
	if len(leaf.URIs) != 1 {
		return spiffeid.ID{}, shapeError(leaf, 0, ErrLeafID, fmt.Sprintf("%d URI SANs", len(leaf.URIs)))
	}
	id, err := spiffeid.FromURI(leaf.URIs[0])
	if err != nil {
		return spiffeid.ID{}, shapeError(leaf, 0, ErrLeafID, err.Error())
	}
	if id.Path() == "" {
		return spiffeid.ID{}, shapeError(leaf, 0, ErrLeafID, fmt.Sprintf("%s has no path", id))
	}
	for i, c := range chain[1:] {
		if !c.BasicConstraintsValid || !c.IsCA {
			return spiffeid.ID{}, shapeError(c, i+1, ErrIntermediateNotCA, "a signing certificate must have cA=true")
		}
	}
	return id, nil
}

// RootsArePQ reports whether roots say their trust domain is post-quantum:
// some root carries an ML-DSA alternative public key (hybrid) or is a pure
// ML-DSA certificate. VerifyX509 then requires PQ verification unless
// Options.AllowClassical is set.
func RootsArePQ(roots []*x509.Certificate) bool {
	for _, r := range roots {
		if purecert.IsPure(r) {
			return true
		}
		if _, err := altsig.AltPublicKey(r); err == nil {
			return true
		}
	}
	return false
}
