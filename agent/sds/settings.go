package sds

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// SPIRE's default resource names.
const (
	DefaultSVIDName       = "default"
	DefaultBundleName     = "ROOTCA"
	DefaultAllBundlesName = "ALL"
)

// ErrBadSettings marks invalid Settings.
var ErrBadSettings = errors.New("sds: invalid settings")

// Settings are the agent's `sds` block (config.SDS documents each name):
// the resource names for the first identity, the own bundle and all
// bundles, and whether to serve plain trusted_ca instead of the SPIFFE
// certificate validator config.
type Settings struct {
	DefaultSVIDName, DefaultBundleName, DefaultAllBundlesName string
	DisableSPIFFECertValidation                               bool
}

// WithDefaults returns s with SPIRE's default names for the empty ones.
func (s Settings) WithDefaults() Settings {
	if s.DefaultSVIDName == "" {
		s.DefaultSVIDName = DefaultSVIDName
	}
	if s.DefaultBundleName == "" {
		s.DefaultBundleName = DefaultBundleName
	}
	if s.DefaultAllBundlesName == "" {
		s.DefaultAllBundlesName = DefaultAllBundlesName
	}
	return s
}

// Validate checks the names (after defaults): each must be distinct from
// the others, free of spaces and control characters, and not a SPIFFE ID
// (those name the workload's identities and trust domains).
func (s Settings) Validate() error {
	s = s.WithDefaults()
	names := []struct{ key, v string }{
		{"default_svid_name", s.DefaultSVIDName},
		{"default_bundle_name", s.DefaultBundleName},
		{"default_all_bundles_name", s.DefaultAllBundlesName},
	}
	for i, n := range names {
		if strings.IndexFunc(n.v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			return fmt.Errorf("%w: %s %q holds spaces or control characters", ErrBadSettings, n.key, n.v)
		}
		if strings.HasPrefix(strings.ToLower(n.v), "spiffe://") {
			return fmt.Errorf("%w: %s %q is a SPIFFE ID, which names an identity or trust domain bundle already", ErrBadSettings, n.key, n.v)
		}
		for _, o := range names[:i] {
			if o.v == n.v {
				return fmt.Errorf("%w: %s and %s are both %q", ErrBadSettings, o.key, n.key, n.v)
			}
		}
	}
	return nil
}
