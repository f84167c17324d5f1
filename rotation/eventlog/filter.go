package eventlog

import (
	"fmt"
	"strings"
	"time"
)

// Filter selects records by kind and time.
type Filter struct {
	// Kinds are exact kinds ("svid.issued") or families ending in ".*"
	// ("ca.*", "vault.lease.*"); empty matches every kind.
	Kinds []string
	// Since, if not zero, drops records stamped before it. Record times
	// never decrease along the log, so a reader may stop scanning
	// backwards at the first older record.
	Since time.Time
}

// Validate checks the kind patterns.
func (f Filter) Validate() error {
	for _, k := range f.Kinds {
		if k == "*" {
			continue
		}
		if fam, ok := strings.CutSuffix(k, ".*"); ok {
			k = fam
		}
		if !wellFormedKind(k) {
			return fmt.Errorf("eventlog: invalid kind filter %q: use a kind such as svid.issued or a family such as ca.*", k)
		}
	}
	return nil
}

// Match reports whether r passes the filter.
func (f Filter) Match(r Record) bool {
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	return MatchKind(f.Kinds, string(r.Kind))
}

// MatchKind reports whether kind matches one of patterns (see
// Filter.Kinds); no patterns match every kind.
func MatchKind(patterns []string, kind string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if p == "*" || p == kind {
			return true
		}
		if fam, ok := strings.CutSuffix(p, "*"); ok && strings.HasSuffix(fam, ".") && strings.HasPrefix(kind, fam) {
			return true
		}
	}
	return false
}

// Select returns the records of recs that match f.
func (f Filter) Select(recs []Record) []Record {
	var out []Record
	for _, r := range recs {
		if f.Match(r) {
			out = append(out, r)
		}
	}
	return out
}
