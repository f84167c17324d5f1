package store

import (
	"fmt"

	"github.com/signet-id/signet/spireid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// Size limits on what an entry may hold, enforced here whatever the caller
// (docs/limits.md). The API layers check them first to name the field.
const (
	// MaxIDLength is the SPIFFE specification's limit on a SPIFFE ID URI,
	// in bytes.
	MaxIDLength = 2048
	// MaxSelectorsPerEntry bounds an entry's selectors.
	MaxSelectorsPerEntry = 64
	// MaxSelectorValueLength bounds one selector's type plus value, in
	// bytes.
	MaxSelectorValueLength = 2048
	// MaxDNSNamesPerEntry bounds an entry's DNS names (each a SAN of the
	// certificate the agent obtains).
	MaxDNSNamesPerEntry = 100
)

// ReservedPrefix is the SPIFFE ID path namespace of the server and agents:
// only attestation mints IDs in it, never an entry.
const ReservedPrefix = spireid.Namespace

// IsReservedPath reports whether a SPIFFE ID path is in the reserved
// /spire namespace.
func IsReservedPath(path string) bool {
	return spireid.IsReserved(path)
}

// CheckIDLength refuses a SPIFFE ID message longer than MaxIDLength.
func CheckIDLength(what string, p *types.SPIFFEID) error {
	if n := len("spiffe://") + len(p.GetTrustDomain()) + len(p.GetPath()); n > MaxIDLength {
		return fmt.Errorf("%s is %d bytes, longer than the SPIFFE limit of %d bytes", what, n, MaxIDLength)
	}
	return nil
}

// checkEntryLimits applies the size limits and the reserved namespace to
// an entry.
func checkEntryLimits(e *types.Entry) error {
	for _, f := range []struct {
		what string
		id   *types.SPIFFEID
	}{{"spiffe_id", e.SpiffeId}, {"parent_id", e.ParentId}} {
		if err := CheckIDLength(f.what, f.id); err != nil {
			return invalidf("invalid %v", err)
		}
	}
	if IsReservedPath(e.SpiffeId.GetPath()) {
		return invalidf("invalid spiffe_id: %q is in the reserved namespace %s/ (only attestation issues those IDs)", "spiffe://"+e.SpiffeId.GetTrustDomain()+e.SpiffeId.GetPath(), ReservedPrefix)
	}
	if len(e.Selectors) > MaxSelectorsPerEntry {
		return invalidf("too many selectors: %d, at most %d per entry", len(e.Selectors), MaxSelectorsPerEntry)
	}
	for _, sel := range e.Selectors {
		if n := len(sel.GetType()) + len(sel.GetValue()); n > MaxSelectorValueLength {
			return invalidf("selector of type %q is %d bytes, at most %d", sel.GetType(), n, MaxSelectorValueLength)
		}
	}
	if len(e.DnsNames) > MaxDNSNamesPerEntry {
		return invalidf("too many dns_names: %d, at most %d per entry", len(e.DnsNames), MaxDNSNamesPerEntry)
	}
	return nil
}
