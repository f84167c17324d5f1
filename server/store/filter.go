package store

import (
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// MatchBehavior is how a set in a filter is compared with a record's set,
// with SPIRE's semantics (the values equal spire-api-sdk's enums).
type MatchBehavior int32

const (
	// MatchExact matches when the record's set equals the filter's set.
	MatchExact MatchBehavior = 0
	// MatchSubset matches when the record's set is non-empty and a subset
	// of the filter's set.
	MatchSubset MatchBehavior = 1
	// MatchSuperset matches when the record's set contains every element
	// of the filter's set.
	MatchSuperset MatchBehavior = 2
	// MatchAny matches when the record's set shares at least one element
	// with the filter's set.
	MatchAny MatchBehavior = 3
)

// SelectorMatch filters by selectors.
type SelectorMatch struct {
	Selectors []*types.Selector
	Match     MatchBehavior
}

// FederatesWithMatch filters by federated trust domains (names such as
// "example.org").
type FederatesWithMatch struct {
	TrustDomains []string
	Match        MatchBehavior
}

// EntryFilter selects entries; zero fields match everything. All set
// fields must match.
type EntryFilter struct {
	BySpiffeID      spiffeid.ID
	ByParentID      spiffeid.ID
	BySelectors     *SelectorMatch
	ByFederatesWith *FederatesWithMatch
	ByHint          string
	ByDownstream    *bool
}

// matchSet reports whether record set have matches filter set want under
// behavior m. Sets are deduplicated.
func matchSet[T comparable](have, want []T, m MatchBehavior) bool {
	contains := func(set []T, v T) bool {
		for _, x := range set {
			if x == v {
				return true
			}
		}
		return false
	}
	allIn := func(a, b []T) bool {
		for _, v := range a {
			if !contains(b, v) {
				return false
			}
		}
		return true
	}
	switch m {
	case MatchExact:
		return len(have) > 0 && allIn(have, want) && allIn(want, have)
	case MatchSubset:
		return len(have) > 0 && allIn(have, want)
	case MatchSuperset:
		return allIn(want, have)
	case MatchAny:
		for _, v := range want {
			if contains(have, v) {
				return true
			}
		}
		return false
	default:
		return false
	}
}

func (f *EntryFilter) matches(r *entryRec) bool {
	if !f.BySpiffeID.IsZero() && r.spiffeID != f.BySpiffeID.String() {
		return false
	}
	if !f.ByParentID.IsZero() && r.parentID != f.ByParentID.String() {
		return false
	}
	if f.ByHint != "" && r.e.Hint != f.ByHint {
		return false
	}
	if f.ByDownstream != nil && r.e.Downstream != *f.ByDownstream {
		return false
	}
	if f.BySelectors != nil && !matchSet(r.sels, selKeys(f.BySelectors.Selectors), f.BySelectors.Match) {
		return false
	}
	if f.ByFederatesWith != nil && !matchSet(r.feds, dedupe(f.ByFederatesWith.TrustDomains), f.ByFederatesWith.Match) {
		return false
	}
	return true
}

// candidates returns a superset of the IDs of the entries matching f
// from the narrowest applicable index, or all=true when no index applies.
func (f *EntryFilter) candidates(x *index) (ids map[string]*entryRec, all bool) {
	var best map[string]*entryRec
	consider := func(set map[string]*entryRec) {
		if best == nil || len(set) < len(best) {
			best = set
		}
	}
	indexed := false
	if !f.ByParentID.IsZero() {
		indexed = true
		consider(orEmpty(x.byParent[f.ByParentID.String()]))
	}
	if !f.BySpiffeID.IsZero() {
		indexed = true
		consider(orEmpty(x.bySpiffe[f.BySpiffeID.String()]))
	}
	if f.BySelectors != nil && len(f.BySelectors.Selectors) > 0 {
		keys := selKeys(f.BySelectors.Selectors)
		switch f.BySelectors.Match {
		case MatchExact, MatchSuperset:
			// Every matching entry has every filter selector.
			indexed = true
			for _, k := range keys {
				consider(orEmpty(x.bySelector[k]))
			}
		case MatchSubset, MatchAny:
			// Every matching entry has at least one filter selector.
			indexed = true
			u := make(map[string]*entryRec)
			for _, k := range keys {
				for id, r := range x.bySelector[k] {
					u[id] = r
				}
			}
			consider(u)
		}
	}
	if !indexed {
		return nil, true
	}
	return best, false
}

func orEmpty(m map[string]*entryRec) map[string]*entryRec {
	if m == nil {
		return map[string]*entryRec{}
	}
	return m
}

// AgentFilter selects agents; zero fields match everything.
type AgentFilter struct {
	ByAttestationType string
	BySelectors       *SelectorMatch
	ByBanned          *bool
	ByCanReattest     *bool
	// ByExpiresBefore keeps agents whose X509-SVID expires before this
	// time; the zero time disables the filter.
	ByExpiresBefore time.Time
}

func (f *AgentFilter) matches(r *agentRec) bool {
	a := r.a
	if f.ByAttestationType != "" && a.AttestationType != f.ByAttestationType {
		return false
	}
	if f.ByBanned != nil && a.Banned != *f.ByBanned {
		return false
	}
	if f.ByCanReattest != nil && a.CanReattest != *f.ByCanReattest {
		return false
	}
	if !f.ByExpiresBefore.IsZero() && a.X509SvidExpiresAt >= f.ByExpiresBefore.Unix() {
		return false
	}
	if f.BySelectors != nil && !matchSet(r.sels, selKeys(f.BySelectors.Selectors), f.BySelectors.Match) {
		return false
	}
	return true
}
