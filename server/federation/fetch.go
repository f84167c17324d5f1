// Package federation is the Signet server's side of SPIFFE federation: a
// client that fetches each federated trust domain's bundle from its
// bundle endpoint (https_web or https_spiffe) at the bundle's refresh
// hint and keeps the last good one when a fetch fails, and the bundle
// endpoint that serves this trust domain's bundle to others.
package federation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/signet-id/signet/tlspolicy"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// Profile is a bundle endpoint profile of the SPIFFE Federation standard.
type Profile string

// Bundle endpoint profiles.
const (
	// ProfileWeb authenticates the endpoint with Web PKI.
	ProfileWeb Profile = "https_web"
	// ProfileSPIFFE authenticates the endpoint with an X.509-SVID of
	// EndpointID, verified against the stored bundle of its trust domain.
	ProfileSPIFFE Profile = "https_spiffe"
)

// Relationship is one federated trust domain and its bundle endpoint.
type Relationship struct {
	TrustDomain spiffeid.TrustDomain
	URL         string
	Profile     Profile
	// EndpointID is the endpoint's SPIFFE ID (ProfileSPIFFE only).
	EndpointID spiffeid.ID
	// Static is set for relationships from the configuration file, which
	// override those of the TrustDomain API.
	Static bool
}

// check validates a relationship from the configuration.
func (rel Relationship) check(own spiffeid.TrustDomain) error {
	switch {
	case rel.TrustDomain.IsZero():
		return errors.New("federation: relationship without a trust domain")
	case rel.TrustDomain == own:
		return fmt.Errorf("federation: %q is the server's own trust domain", own.Name())
	}
	u, err := url.Parse(rel.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return fmt.Errorf("federation: relationship %q: bundle endpoint URL %q must be an https URL with a host and no user info", rel.TrustDomain.Name(), rel.URL)
	}
	switch rel.Profile {
	case ProfileWeb:
	case ProfileSPIFFE:
		if rel.EndpointID.IsZero() {
			return fmt.Errorf("federation: relationship %q: https_spiffe needs the endpoint SPIFFE ID", rel.TrustDomain.Name())
		}
	default:
		return fmt.Errorf("federation: relationship %q: unknown bundle endpoint profile %q (use https_web or https_spiffe)", rel.TrustDomain.Name(), rel.Profile)
	}
	return nil
}

// Errors a fetch can fail with; callers branch on them with errors.Is.
var (
	// ErrNoEndpointBundle: https_spiffe needs the bundle of the endpoint
	// SPIFFE ID's trust domain to authenticate it, and none is stored.
	ErrNoEndpointBundle = errors.New("federation: no bundle to authenticate the endpoint")
	// ErrWrongTrustDomain: the endpoint served authorities of another
	// trust domain.
	ErrWrongTrustDomain = errors.New("federation: bundle belongs to another trust domain")
	// ErrEmptyBundle: the endpoint served a bundle without authorities,
	// which would revoke all trust in the trust domain; it is refused.
	ErrEmptyBundle = errors.New("federation: bundle has no authorities")
	// ErrBadResponse: the endpoint answered with a status other than 200.
	ErrBadResponse = errors.New("federation: bad response from bundle endpoint")
)

// fetcher fetches bundles from bundle endpoints.
type fetcher struct {
	// bundle returns the stored bundle of td, nil if none.
	bundle   func(ctx context.Context, td spiffeid.TrustDomain) (*spiffebundle.Bundle, error)
	webRoots *x509.CertPool
	timeout  time.Duration
	// policy is the client's key exchange policy. Bundles are public and
	// authenticated by the endpoint's signature, so the client also offers
	// classical groups (hybrid first) to reach endpoints that lack them.
	policy tlspolicy.Policy
}

func (f *fetcher) tlsConfig(ctx context.Context, rel Relationship) (*tls.Config, error) {
	switch rel.Profile {
	case ProfileWeb:
		c := f.policy.Config()
		c.MinVersion = tls.VersionTLS12
		c.RootCAs = f.webRoots
		return c, nil
	case ProfileSPIFFE:
		etd := rel.EndpointID.TrustDomain()
		b, err := f.bundle(ctx, etd)
		if err != nil {
			return nil, err
		}
		if b == nil || len(b.X509Authorities()) == 0 {
			return nil, fmt.Errorf("%w: no X.509 authorities of %q are stored (set them with `signet bundle set` or the relationship's trust domain bundle)", ErrNoEndpointBundle, etd.Name())
		}
		c := f.policy.Config()
		tlsconfig.HookTLSClientConfig(c, x509bundle.FromX509Authorities(etd, b.X509Authorities()), tlsconfig.AuthorizeID(rel.EndpointID))
		return c, nil
	}
	return nil, fmt.Errorf("federation: unknown bundle endpoint profile %q", rel.Profile)
}

// fetch GETs the bundle of rel over a fresh connection, reads at most
// bundlecodec.MaxSize bytes and parses it as SPIFFE bundle JSON for the
// relationship's trust domain.
func (f *fetcher) fetch(ctx context.Context, rel Relationship) (*spiffebundle.Bundle, error) {
	tc, err := f.tlsConfig(ctx, rel)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	tr := &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true, ForceAttemptHTTP2: false, Proxy: http.ProxyFromEnvironment}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return errors.New("federation: bundle endpoints must not redirect")
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rel.URL, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("federation: request %s: %w", rel.URL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("federation: GET %s: %w", rel.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: GET %s: %s", ErrBadResponse, rel.URL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, bundlecodec.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("federation: read bundle from %s: %w", rel.URL, err)
	}
	b, err := bundlecodec.ParseSPIFFE(rel.TrustDomain, data)
	if err != nil {
		return nil, fmt.Errorf("federation: bundle from %s: %w", rel.URL, err)
	}
	if b.Empty() {
		return nil, fmt.Errorf("%w: served by %s", ErrEmptyBundle, rel.URL)
	}
	if err := checkTrustDomain(rel.TrustDomain, b); err != nil {
		return nil, fmt.Errorf("federation: bundle from %s: %w", rel.URL, err)
	}
	return b, nil
}

// checkTrustDomain refuses a bundle whose X.509 authorities name a SPIFFE
// trust domain other than td in their URI SANs (SPIFFE CAs name their
// trust domain; a root without a SPIFFE URI is accepted).
func checkTrustDomain(td spiffeid.TrustDomain, b *spiffebundle.Bundle) error {
	for _, c := range b.X509Authorities() {
		for _, u := range c.URIs {
			if u.Scheme != "spiffe" {
				continue
			}
			if u.Host != td.Name() {
				return fmt.Errorf("%w: authority %q names trust domain %q, expected %q", ErrWrongTrustDomain, c.Subject.String(), u.Host, td.Name())
			}
		}
	}
	return nil
}
