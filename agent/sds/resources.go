package sds

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/signet-id/signet/agent/cache"
)

// SecretTypeURL is the type URL of the resources served (and the only one
// accepted in requests).
var SecretTypeURL = "type.googleapis.com/" + string((&tlsv3.Secret{}).ProtoReflect().Descriptor().FullName())

// SPIFFEValidatorName is the name of Envoy's SPIFFE certificate validator
// extension, which the validation context secrets configure.
const SPIFFEValidatorName = "envoy.tls.cert_validator.spiffe"

// disableValidationKey is the Envoy node metadata key that overrides
// Settings.DisableSPIFFECertValidation for one client, as in SPIRE.
const disableValidationKey = "disable_spiffe_cert_validation"

// ErrNotAuthorized marks a request for names the workload does not hold
// (another workload's SPIFFE ID, an unknown name); the caller gets
// InvalidArgument, as from SPIRE.
var ErrNotAuthorized = errors.New("sds: names not authorized")

// unauthorizedError carries the names a workload asked for but does not
// hold; it is InvalidArgument to the caller, as in SPIRE.
type unauthorizedError struct{ names []string }

func (e unauthorizedError) Error() string {
	return fmt.Sprintf("workload is not authorized for the requested identities %q", e.names)
}
func (e unauthorizedError) Unwrap() error { return ErrNotAuthorized }
func (e unauthorizedError) GRPCStatus() *status.Status {
	return status.New(codes.InvalidArgument, e.Error())
}

// view is what one request may be answered from.
type view struct {
	u *cache.WorkloadUpdate
	// bundles: the caller may see the bundles (it has an identity, or
	// unauthenticated verifiers are allowed).
	bundles bool
	// spiffe: validation contexts use the SPIFFE certificate validator.
	spiffe bool
}

// resources returns the secrets req asks for from v, in a stable order:
// trust domain bundles, the default bundle names, then identities. Empty
// resource names ask for every bundle and identity the workload holds.
func (h *Handler) resources(req *discoveryv3.DiscoveryRequest, v view) ([]*anypb.Any, error) {
	names := make(map[string]bool)
	for _, n := range req.ResourceNames {
		if n != "" {
			names[n] = true
		}
	}
	all := len(names) == 0
	var out []*anypb.Any
	add := func(a *anypb.Any, err error) error {
		if err != nil {
			return err
		}
		out = append(out, a)
		return nil
	}
	if v.bundles && v.u.Bundle != nil {
		bundles := append([]*spiffebundle.Bundle{v.u.Bundle}, sortedFederated(v.u)...)
		for _, b := range bundles {
			if id := b.TrustDomain().IDString(); all || names[id] {
				if err := add(bundleSecret(id, v.spiffe, b)); err != nil {
					return nil, err
				}
				delete(names, id)
			}
		}
		if names[h.set.DefaultBundleName] {
			if err := add(bundleSecret(h.set.DefaultBundleName, v.spiffe, v.u.Bundle)); err != nil {
				return nil, err
			}
			delete(names, h.set.DefaultBundleName)
		}
		if names[h.set.DefaultAllBundlesName] {
			if !v.spiffe {
				return nil, status.Errorf(codes.FailedPrecondition, "%s needs the SPIFFE certificate validator (disable_spiffe_cert_validation is set, or Envoy is older than 1.18)", h.set.DefaultAllBundlesName)
			}
			if err := add(bundleSecret(h.set.DefaultAllBundlesName, true, bundles...)); err != nil {
				return nil, err
			}
			delete(names, h.set.DefaultAllBundlesName)
		}
	}
	seen := make(map[string]bool)
	for i, id := range v.u.Identities {
		sid, err := cache.EntrySPIFFEID(id.Entry)
		if err != nil || seen[sid.String()] {
			// Two entries of one SPIFFE ID: the first (lowest entry ID) is served.
			continue
		}
		seen[sid.String()] = true
		if all || names[sid.String()] {
			if err := add(certificateSecret(sid.String(), id.SVID)); err != nil {
				return nil, err
			}
			delete(names, sid.String())
		}
		if i == 0 && names[h.set.DefaultSVIDName] {
			if err := add(certificateSecret(h.set.DefaultSVIDName, id.SVID)); err != nil {
				return nil, err
			}
			delete(names, h.set.DefaultSVIDName)
		}
	}
	if len(names) > 0 {
		missing := make([]string, 0, len(names))
		for n := range names {
			missing = append(missing, n)
		}
		slices.Sort(missing)
		return nil, unauthorizedError{missing}
	}
	return out, nil
}

// useSPIFFEValidator reports whether validation contexts for the client
// of req use the SPIFFE certificate validator: unless disabled by the
// settings or the node metadata, and for Envoy 1.18 and later (or clients
// that do not say their version), as in SPIRE.
func (h *Handler) useSPIFFEValidator(node *corev3.Node) bool {
	disabled := h.set.DisableSPIFFECertValidation
	if v, ok := node.GetMetadata().GetFields()[disableValidationKey]; ok {
		switch k := v.GetKind().(type) {
		case *structpb.Value_BoolValue:
			disabled = k.BoolValue
		case *structpb.Value_StringValue:
			if b, err := strconv.ParseBool(k.StringValue); err == nil {
				disabled = b
			}
		}
	}
	if disabled {
		return false
	}
	if bv := node.GetUserAgentBuildVersion().GetVersion(); bv != nil {
		return bv.MajorNumber > 1 || (bv.MajorNumber == 1 && bv.MinorNumber >= 18)
	}
	return true
}

// bundleSecret is a validation context: with spiffe, a SPIFFE certificate
// validator config with one trust domain per bundle; else the (single)
// bundle's X.509 authorities as trusted_ca.
func bundleSecret(name string, spiffe bool, bundles ...*spiffebundle.Bundle) (*anypb.Any, error) {
	vc := new(tlsv3.CertificateValidationContext)
	if !spiffe {
		vc.TrustedCa = inline(encodeCerts(bundles[0].X509Authorities()))
	} else {
		cfg := new(tlsv3.SPIFFECertValidatorConfig)
		for _, b := range bundles {
			cfg.TrustDomains = append(cfg.TrustDomains, &tlsv3.SPIFFECertValidatorConfig_TrustDomain{
				Name:        b.TrustDomain().Name(),
				TrustBundle: inline(encodeCerts(b.X509Authorities())),
			})
		}
		tc, err := anypb.New(cfg)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode SPIFFE validator config: %v", err)
		}
		vc.CustomValidatorConfig = &corev3.TypedExtensionConfig{Name: SPIFFEValidatorName, TypedConfig: tc}
	}
	return secret(&tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: vc}})
}

// certificateSecret is a tls_certificate: the chain exactly as the cache
// holds it (leaf first, hybrid extensions intact) and the PKCS #8 key.
func certificateSecret(name string, svid *cache.X509SVID) (*anypb.Any, error) {
	key, err := x509.MarshalPKCS8PrivateKey(svid.Key)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "marshal SVID key: %v", err)
	}
	return secret(&tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline(encodeCerts(svid.Chain)),
		PrivateKey:       inline(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})),
	}}})
}

func secret(s *tlsv3.Secret) (*anypb.Any, error) {
	a, err := anypb.New(s)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode secret %s: %v", s.Name, err)
	}
	return a, nil
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func sortedFederated(u *cache.WorkloadUpdate) []*spiffebundle.Bundle {
	out := make([]*spiffebundle.Bundle, 0, len(u.Federated))
	for _, b := range u.Federated {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b *spiffebundle.Bundle) int {
		return strings.Compare(a.TrustDomain().Name(), b.TrustDomain().Name())
	})
	return out
}
