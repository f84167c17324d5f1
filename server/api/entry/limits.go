package entry

import (
	"fmt"
	"time"

	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// MinSVIDTTL is the shortest SVID lifetime an entry may ask for (zero means
// the server default). Shorter lifetimes make the agent renew, and the
// server sign and log, that often for as long as the entry exists.
const MinSVIDTTL = 60 * time.Second

// checkLimits applies the size and lifetime limits (docs/limits.md) to the
// fields of e selected by mask (all when nil), naming the field and limit.
func (s *Service) checkLimits(e *types.Entry, mask *types.EntryMask) error {
	all := mask == nil
	if all || mask.SpiffeId {
		if err := store.CheckIDLength("spiffe_id", e.SpiffeId); err != nil {
			return fmt.Errorf("invalid %w", err)
		}
	}
	if all || mask.ParentId {
		if err := store.CheckIDLength("parent_id", e.ParentId); err != nil {
			return fmt.Errorf("invalid %w", err)
		}
	}
	if all || mask.Selectors {
		if len(e.Selectors) > store.MaxSelectorsPerEntry {
			return fmt.Errorf("invalid selectors: %d selectors, at most %d per entry", len(e.Selectors), store.MaxSelectorsPerEntry)
		}
		for _, sel := range e.Selectors {
			if n := len(sel.GetType()) + len(sel.GetValue()); n > store.MaxSelectorValueLength {
				return fmt.Errorf("invalid selectors: selector of type %q is %d bytes, at most %d", sel.GetType(), n, store.MaxSelectorValueLength)
			}
		}
	}
	if (all || mask.DnsNames) && len(e.DnsNames) > store.MaxDNSNamesPerEntry {
		return fmt.Errorf("invalid dns_names: %d names, at most %d per entry", len(e.DnsNames), store.MaxDNSNamesPerEntry)
	}
	for _, f := range []struct {
		name string
		on   bool
		ttl  int32
	}{{"x509_svid_ttl", all || mask.X509SvidTtl, e.X509SvidTtl}, {"jwt_svid_ttl", all || mask.JwtSvidTtl, e.JwtSvidTtl}} {
		if !f.on || f.ttl <= 0 {
			continue
		}
		ttl := time.Duration(f.ttl) * time.Second
		if ttl < MinSVIDTTL {
			return fmt.Errorf("invalid %s: %d seconds is below the minimum of %d seconds (0 means the server default)", f.name, f.ttl, int(MinSVIDTTL.Seconds()))
		}
		if ttl > s.maxTTL {
			return fmt.Errorf("invalid %s: %d seconds exceeds the CA lifetime of %d seconds (%s); no SVID outlives its CA", f.name, f.ttl, int(s.maxTTL.Seconds()), s.maxTTL)
		}
	}
	return nil
}
