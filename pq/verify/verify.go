// Package verify is the PQ-aware relying party for X.509-SVID chains of all
// three credential profiles. For classic and hybrid chains it runs
// crypto/x509's path validation and then checks every alternative (ML-DSA)
// signature along the verified path with the issuer's alternative public
// key; for pure ML-DSA chains it runs purecert's verifier. Every chain must
// first have the X509-SVID shape (CheckSVIDShape). Where the roots are
// post-quantum (hybrid or pure), missing post-quantum protection is a
// downgrade error unless the caller allows classical chains explicitly.
package verify

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/pq/altsig"
	pqjwt "github.com/signet-id/signet/pq/jwt"
	"github.com/signet-id/signet/pq/purecert"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Profile is the credential profile a verified chain turned out to have.
type Profile = pqjwt.Profile

// The credential profiles (shared with JWT-SVID verification).
const (
	Classic = pqjwt.Classic
	Hybrid  = pqjwt.Hybrid
	PQ      = pqjwt.PQ
)

// Errors; callers branch on them with errors.Is. Failures tied to one
// certificate come wrapped in a *CertError.
var (
	ErrEmptyChain = errors.New("verify: empty chain")
	// ErrClassicChain: crypto/x509 rejected the classical chain.
	ErrClassicChain = errors.New("verify: classical chain is invalid")
	// ErrPureChain: the pure ML-DSA chain is invalid (wraps purecert's error).
	ErrPureChain = errors.New("verify: pure ML-DSA chain is invalid")
	// ErrAltMissing: RequirePQ is set and a certificate lacks its alternative
	// signature or alternative public key (e.g. the extensions were stripped).
	ErrAltMissing = errors.New("verify: post-quantum alternative signature or key missing")
	// ErrAltSignature: an alternative signature is present but does not
	// verify with the issuer's alternative key (altered, re-signed with the
	// classical key only, or issued under another ML-DSA key).
	ErrAltSignature = errors.New("verify: post-quantum alternative signature is invalid")
)

// CertError says which certificate of the verified path failed.
type CertError struct {
	Index   int // 0 = leaf; the root is the last index
	Subject string
	Err     error
}

func (e *CertError) Error() string {
	return fmt.Sprintf("verify: certificate %d (%s): %v", e.Index, e.Subject, e.Err)
}

func (e *CertError) Unwrap() error { return e.Err }

// Options configures VerifyX509.
type Options struct {
	// RequirePQ demands post-quantum protection of the whole path: every
	// certificate of a hybrid chain must carry a valid alternative signature
	// by its issuer's alternative key, and the leaf its own alternative key;
	// a classic chain fails. Pure ML-DSA chains always satisfy it.
	RequirePQ bool
	// AllowClassical turns off the downgrade guard: by default, when the
	// roots are post-quantum (RootsArePQ), a chain that is not PQ-protected
	// end to end fails with ErrDowngrade; with AllowClassical it verifies
	// as a classic (or partly hybrid) SVID with PQVerified false. Ignored
	// when RequirePQ is set.
	AllowClassical bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// KeyUsages are the acceptable leaf EKUs; empty means any.
	KeyUsages []x509.ExtKeyUsage
}

// Result describes a verified chain.
type Result struct {
	// ID is the leaf's SPIFFE ID.
	ID      spiffeid.ID
	Profile Profile
	// Chain is the verified path, leaf first, root last.
	Chain []*x509.Certificate
	// PQVerified reports that every link of Chain is protected by a valid
	// ML-DSA signature.
	PQVerified bool
}

// VerifyX509 verifies chain (leaf first, then intermediates as presented)
// against roots, which may mix classical/hybrid roots and pure ML-DSA roots.
//
// The chain must have the X509-SVID shape (CheckSVIDShape) before any
// signature is checked. Post-quantum protection is required when
// RequirePQ is set (ErrAltMissing), and also when the roots are
// post-quantum and AllowClassical is not set (ErrDowngrade, which also
// matches ErrAltMissing). Even when classical chains are allowed a hybrid
// chain must have no invalid alternative signature: an alternative
// signature that is present and whose issuer has an alternative key is
// always checked.
func VerifyX509(chain []*x509.Certificate, roots []*x509.Certificate, opts Options) (*Result, error) {
	if len(chain) == 0 {
		return nil, ErrEmptyChain
	}
	id, err := CheckSVIDShape(chain)
	if err != nil {
		return nil, err
	}
	guard := !opts.RequirePQ && !opts.AllowClassical && RootsArePQ(roots)
	now := time.Now()
	if opts.Now != nil {
		now = opts.Now()
	}
	var classicRoots, pureRoots []*x509.Certificate
	for _, r := range roots {
		if purecert.IsPure(r) {
			pureRoots = append(pureRoots, r)
		} else {
			classicRoots = append(classicRoots, r)
		}
	}

	if purecert.IsPure(chain[0]) {
		path, err := purecert.Verify(chain, purecert.VerifyOptions{Roots: pureRoots, CurrentTime: now, KeyUsages: opts.KeyUsages})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrPureChain, err)
		}
		return &Result{ID: id, Profile: PQ, Chain: path, PQVerified: true}, nil
	}

	pool := x509.NewCertPool()
	for _, r := range classicRoots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	ku := opts.KeyUsages
	if len(ku) == 0 {
		ku = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	paths, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: ku})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrClassicChain, err)
	}
	// crypto/x509 may find several paths (e.g. while a root rotates); the
	// first one whose alternative signatures hold wins.
	var firstErr error
	for _, path := range paths {
		res, err := checkAlt(path, opts.RequirePQ || guard)
		if err == nil {
			res.ID = id
			return res, nil
		}
		if guard && errors.Is(err, ErrAltMissing) {
			err = fmt.Errorf("%w: %w", ErrDowngrade, err)
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// checkAlt checks the alternative signatures along a verified path.
func checkAlt(path []*x509.Certificate, requirePQ bool) (*Result, error) {
	certErr := func(i int, err error) error {
		return &CertError{Index: i, Subject: path[i].Subject.String(), Err: err}
	}
	anyAlt := false
	complete := true
	for _, c := range path {
		anyAlt = anyAlt || altsig.HasAlt(c)
	}
	if _, err := altsig.AltPublicKey(path[0]); err != nil {
		if errors.Is(err, altsig.ErrMalformed) {
			return nil, certErr(0, fmt.Errorf("%w: %w", ErrAltSignature, err))
		}
		complete = false
		if requirePQ {
			return nil, certErr(0, fmt.Errorf("%w: leaf has no alternative public key", ErrAltMissing))
		}
	}
	for i, c := range path {
		var issuer *x509.Certificate
		switch {
		case i+1 < len(path):
			issuer = path[i+1]
		case bytes.Equal(c.RawIssuer, c.RawSubject):
			issuer = c // self-signed root: its own alternative key
		default:
			// A trust anchor that is not self-issued: nothing above it.
			continue
		}
		a, err := altsig.Parse(c.Raw)
		if err != nil {
			return nil, certErr(i, fmt.Errorf("%w: %w", ErrAltSignature, err))
		}
		if a.Signature == nil || a.SignatureAlgorithm == 0 {
			complete = false
			if requirePQ {
				return nil, certErr(i, fmt.Errorf("%w: no alternative signature", ErrAltMissing))
			}
			continue
		}
		issuerAlt, err := altsig.AltPublicKey(issuer)
		if errors.Is(err, altsig.ErrNoAltPublicKey) {
			complete = false
			if requirePQ {
				return nil, certErr(i, fmt.Errorf("%w: issuer has no alternative public key", ErrAltMissing))
			}
			continue
		}
		if err != nil {
			return nil, certErr(i, fmt.Errorf("%w: issuer: %w", ErrAltSignature, err))
		}
		if err := altsig.VerifyAlt(c, issuerAlt); err != nil {
			return nil, certErr(i, fmt.Errorf("%w: %w", ErrAltSignature, err))
		}
	}
	res := &Result{Profile: Classic, Chain: path}
	if anyAlt {
		res.Profile = Hybrid
		res.PQVerified = complete
	}
	if requirePQ && !res.PQVerified {
		return nil, certErr(0, ErrAltMissing)
	}
	return res, nil
}
