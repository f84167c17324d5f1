package config

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Federation is SPIRE's `federation` block inside `server`: the bundle
// endpoint this server serves and the trust domains it federates with.
// Static relationships override those created through the TrustDomain
// API and are not listed by `signet federation list`, as in SPIRE.
type Federation struct {
	// BundleEndpoint serves this trust domain's bundle to others.
	BundleEndpoint *BundleEndpoint `hcl:"bundle_endpoint,block"`
	// FederatesWith are the trust domains whose bundles the server
	// fetches, one block per trust domain (its label).
	FederatesWith []FederatesWith `hcl:"federates_with,block"`
}

// BundleEndpoint is the `bundle_endpoint` block.
type BundleEndpoint struct {
	// Address is the IP address the bundle endpoint listens on (default
	// 0.0.0.0).
	Address string `hcl:"address,optional"`
	// Port is the bundle endpoint's TCP port (default 8443).
	Port int `hcl:"port,optional"`
	// RefreshHint is the refresh hint published in the bundle, e.g. 10m
	// (default 5m).
	RefreshHint string `hcl:"refresh_hint,optional"`
	// Profile is the endpoint's profile, "https_spiffe" (the server's
	// SVID; the default) or "https_web" (serving_cert_file).
	Profile *EndpointProfile `hcl:"profile,block"`
}

// EndpointProfile is the `profile "<name>"` block of bundle_endpoint.
type EndpointProfile struct {
	// Name is https_spiffe or https_web.
	Name string `hcl:"name,label"`
	// ACME is SPIRE's automatic certificate for https_web; Signet refuses
	// it (use serving_cert_file).
	ACME *ACME `hcl:"acme,block"`
	// ServingCertFile is the https_web certificate read from files.
	ServingCertFile *ServingCertFile `hcl:"serving_cert_file,block"`
}

// ACME is SPIRE's `acme` block, refused by Signet.
type ACME struct {
	// DirectoryURL is the ACME directory.
	DirectoryURL string `hcl:"directory_url,optional"`
	// DomainName is the certificate's domain.
	DomainName string `hcl:"domain_name,optional"`
	// Email is the ACME account's contact.
	Email string `hcl:"email,optional"`
	// TOSAccepted accepts the ACME terms of service.
	TOSAccepted bool `hcl:"tos_accepted,optional"`
}

// ServingCertFile is the `serving_cert_file` block of https_web.
type ServingCertFile struct {
	// CertFilePath is the certificate chain (PEM).
	CertFilePath string `hcl:"cert_file_path"`
	// KeyFilePath is its private key (PEM).
	KeyFilePath string `hcl:"key_file_path"`
	// FileSyncInterval is how often the files are re-read (default 1h).
	FileSyncInterval string `hcl:"file_sync_interval,optional"`
}

// FederatesWith is a `federates_with "<trust domain>"` block.
type FederatesWith struct {
	// TrustDomain is the federated trust domain (the block's label).
	TrustDomain string `hcl:"trust_domain,label"`
	// BundleEndpointURL is the https URL of its bundle endpoint.
	BundleEndpointURL string `hcl:"bundle_endpoint_url"`
	// BundleEndpointProfile says how the endpoint is authenticated.
	BundleEndpointProfile *FederatesWithProfile `hcl:"bundle_endpoint_profile,block"`
}

// FederatesWithProfile is the `bundle_endpoint_profile "<name>"` block.
type FederatesWithProfile struct {
	// Name is https_web or https_spiffe.
	Name string `hcl:"name,label"`
	// EndpointSPIFFEID is the endpoint's SPIFFE ID (https_spiffe; its
	// trust domain's bundle must be stored, e.g. with `signet bundle set`).
	EndpointSPIFFEID string `hcl:"endpoint_spiffe_id,optional"`
}

func (f *Federation) check(ownTD string) error {
	if f == nil {
		return nil
	}
	if be := f.BundleEndpoint; be != nil {
		if be.Port < 0 || be.Port > 65535 {
			return fmt.Errorf("federation: bundle_endpoint: port %d is not a TCP port", be.Port)
		}
		if err := hostOnly("federation: bundle_endpoint: address", be.Address, "port"); err != nil {
			return err
		}
		if _, err := Duration(be.RefreshHint); err != nil {
			return fmt.Errorf("federation: bundle_endpoint: refresh_hint: %w", err)
		}
		if p := be.Profile; p != nil {
			switch p.Name {
			case "https_spiffe":
				if p.ACME != nil || p.ServingCertFile != nil {
					return fmt.Errorf("federation: bundle_endpoint: profile \"https_spiffe\" serves the server's SVID and takes no acme or serving_cert_file block")
				}
			case "https_web":
				if p.ACME != nil {
					return fmt.Errorf("federation: bundle_endpoint: profile \"https_web\": acme is not supported by Signet (it would need an ACME client and port 443); obtain a certificate elsewhere and use serving_cert_file { cert_file_path key_file_path }")
				}
				if p.ServingCertFile == nil {
					return fmt.Errorf("federation: bundle_endpoint: profile \"https_web\" needs serving_cert_file { cert_file_path = ... key_file_path = ... }")
				}
				if _, err := Duration(p.ServingCertFile.FileSyncInterval); err != nil {
					return fmt.Errorf("federation: bundle_endpoint: serving_cert_file: file_sync_interval: %w", err)
				}
			default:
				return fmt.Errorf("federation: bundle_endpoint: unknown profile %q (use \"https_spiffe\" or \"https_web\")", p.Name)
			}
		}
	}
	seen := map[string]bool{}
	for _, fw := range f.FederatesWith {
		td, err := spiffeid.TrustDomainFromString(fw.TrustDomain)
		if err != nil {
			return fmt.Errorf("federation: federates_with %q: invalid trust domain: %w", fw.TrustDomain, err)
		}
		if td.Name() == strings.ToLower(ownTD) {
			return fmt.Errorf("federation: federates_with %q: a server does not federate with its own trust domain", fw.TrustDomain)
		}
		if seen[td.Name()] {
			return fmt.Errorf("federation: federates_with %q appears twice", fw.TrustDomain)
		}
		seen[td.Name()] = true
		u, err := url.Parse(fw.BundleEndpointURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
			return fmt.Errorf("federation: federates_with %q: bundle_endpoint_url %q must be an https URL with a host and no user info", fw.TrustDomain, fw.BundleEndpointURL)
		}
		p := fw.BundleEndpointProfile
		if p == nil {
			return fmt.Errorf("federation: federates_with %q: bundle_endpoint_profile \"https_web\" {} or \"https_spiffe\" { endpoint_spiffe_id = ... } is required", fw.TrustDomain)
		}
		switch p.Name {
		case "https_web":
			if p.EndpointSPIFFEID != "" {
				return fmt.Errorf("federation: federates_with %q: endpoint_spiffe_id belongs to the https_spiffe profile", fw.TrustDomain)
			}
		case "https_spiffe":
			if _, err := spiffeid.FromString(p.EndpointSPIFFEID); err != nil {
				return fmt.Errorf("federation: federates_with %q: https_spiffe needs endpoint_spiffe_id, a SPIFFE ID such as spiffe://%s/spire/server: %w", fw.TrustDomain, td.Name(), err)
			}
		default:
			return fmt.Errorf("federation: federates_with %q: unknown bundle_endpoint_profile %q (use \"https_web\" or \"https_spiffe\")", fw.TrustDomain, p.Name)
		}
	}
	return nil
}
