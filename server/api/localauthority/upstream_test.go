package localauthority_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/server/api/localauthority"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"google.golang.org/grpc/codes"
)

// rootCA is a real in-memory upstream root that signs intermediates (as
// Vault PKI does); rotate replaces its root.
type rootCA struct {
	mu   sync.Mutex
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	n    int64
}

func (r *rootCA) rotate(t *testing.T) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r.n++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(r.n), Subject: pkix.Name{CommonName: "upstream"},
		NotBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if r.cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	r.key = key
	return ca.X509AuthorityID(r.cert)
}

func (r *rootCA) SignIntermediate(_ context.Context, td spiffeid.TrustDomain, csrDER []byte, ttl time.Duration) ([]*x509.Certificate, []*x509.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, nil, err
	}
	r.n++
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(r.n), Subject: csr.Subject,
		URIs: []*url.URL{td.ID().URL()}, NotBefore: now, NotAfter: now.Add(ttl),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, r.cert, csr.PublicKey, r.key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return []*x509.Certificate{cert}, []*x509.Certificate{r.cert}, err
}

// TestX509UpstreamLifecycle: with an upstream authority, as in SPIRE, the
// local X.509 authority is neither tainted nor revoked; the upstream
// authority that signed the old one is, and agents renew.
func TestX509UpstreamLifecycle(t *testing.T) {
	up := &rootCA{}
	firstRoot := up.rotate(t)
	e := start(t, localauthority.Config{}, up)
	c := ctx(t)
	first := activeID(t, e.m.X509Authorities())
	secondRoot := up.rotate(t)
	var prepared string
	taintUp := func(skid string) func() error {
		return func() error {
			r, err := e.la.TaintX509UpstreamAuthority(c, &localauthorityv1.TaintX509UpstreamAuthorityRequest{SubjectKeyId: skid})
			if err == nil && r.UpstreamAuthoritySubjectKeyId != strings.ToLower(skid) {
				t.Fatalf("taint response %v", r)
			}
			return err
		}
	}
	revokeUp := func(skid string) func() error {
		return func() error {
			r, err := e.la.RevokeX509UpstreamAuthority(c, &localauthorityv1.RevokeX509UpstreamAuthorityRequest{SubjectKeyId: skid})
			if err == nil && r.UpstreamAuthoritySubjectKeyId != strings.ToLower(skid) {
				t.Fatalf("revoke response %v", r)
			}
			return err
		}
	}
	run(t, e, []call{
		{name: "prepare", do: func() error {
			r, err := e.la.PrepareX509Authority(c, &localauthorityv1.PrepareX509AuthorityRequest{})
			if err == nil {
				prepared = r.PreparedAuthority.AuthorityId
				if r.PreparedAuthority.UpstreamAuthoritySubjectKeyId != secondRoot {
					t.Fatalf("prepared authority's upstream ID %q, want %q", r.PreparedAuthority.UpstreamAuthoritySubjectKeyId, secondRoot)
				}
			}
			return err
		}, pushed: true},
		{name: "taint upstream of a prepared authority", do: taintUp(secondRoot), code: codes.InvalidArgument,
			msg: "provided subject key id is not valid: only upstream authorities signing an old authority can be used"},
		{name: "activate", do: func() error {
			_, err := e.la.ActivateX509Authority(c, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: prepared})
			return err
		}, pushed: true},
		{name: "taint local", do: func() error {
			_, err := e.la.TaintX509Authority(c, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: first})
			return err
		}, code: codes.FailedPrecondition, msg: "local authority can't be tainted if there is an upstream authority"},
		{name: "revoke local", do: func() error {
			_, err := e.la.RevokeX509Authority(c, &localauthorityv1.RevokeX509AuthorityRequest{AuthorityId: first})
			return err
		}, code: codes.FailedPrecondition, msg: "local authority can't be revoked if there is an upstream authority"},
		{name: "taint upstream without ID", do: taintUp(""), code: codes.InvalidArgument, msg: "provided subject key id is not valid: no subject key ID provided"},
		{name: "taint upstream of the active", do: taintUp(secondRoot), code: codes.InvalidArgument,
			msg: "provided subject key id is not valid: unable to use upstream authority signing current authority"},
		{name: "taint unknown upstream", do: taintUp("00ff"), code: codes.InvalidArgument,
			msg: "provided subject key id is not valid: upstream authority didn't sign the old local authority"},
		{name: "revoke untainted upstream", do: revokeUp(firstRoot), code: codes.Internal,
			msg: "failed to revoke X.509 upstream authority: it is not possible to revoke an untainted root CA"},
		{name: "taint upstream (upper case)", do: taintUp(strings.ToUpper(firstRoot)), pushed: true, renewed: true},
		{name: "taint upstream again", do: taintUp(firstRoot), code: codes.Internal, msg: "failed to taint upstream authority: root CA is already tainted"},
		{name: "revoke upstream without ID", do: revokeUp(""), code: codes.InvalidArgument, msg: "invalid subject key ID: no subject key ID provided"},
		{name: "revoke upstream", do: revokeUp(firstRoot), pushed: true},
		{name: "revoke upstream again", do: revokeUp(firstRoot), code: codes.InvalidArgument,
			msg: "invalid subject key ID: upstream authority didn't sign the old local authority"},
	})
	for _, cert := range e.m.Bundle().X509Authorities() {
		if ca.X509AuthorityID(cert) == firstRoot {
			t.Fatal("revoked upstream root still in the bundle")
		}
	}
	want := []string{"ca.prepared", "ca.activated", "ca.tainted", "ca.revoked"}
	if strings.Join(e.ev.kinds, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v", e.ev.kinds, want)
	}
}
