// Package keyspace lays out the Signet server's etcd keys: one root per
// trust domain, "/signet/<trust-domain>/", and below it one typed
// sub-prefix per kind of record. It is the one place that names them; the
// server passes them to the packages that take a prefix as configuration
// (the rotation scheduler, the event log, the secret policies), and
// Migrate moves data written by older layouts.
package keyspace

import "github.com/spiffe/go-spiffe/v2/spiffeid"

// Sub-prefixes below a trust domain's root. The store's records (entries,
// entry similarity keys, agents, join tokens, federated bundles, SVID
// records) are indexed by package store under these names.
const (
	EntriesDir        = "entries/"
	EntryKeysDir      = "entrykeys/" // similarity index: hash(spiffe_id, parent_id, selectors) -> entry ID
	AgentsDir         = "agents/"
	JoinTokensDir     = "jointokens/"
	BundlesDir        = "bundles/"
	FederationDir     = "federation/" // federation relationships, by trust domain
	SVIDsDir          = "svids/"
	SecretPoliciesDir = "secretpolicies/"
	CADir             = "ca/"
	ScheduleDir       = "sched/"
	EventsDir         = "events/"
	// VersionKey holds the layout version (Version) once Migrate ran.
	VersionKey = "version"
)

// Version is the current layout: everything below one root per trust
// domain. Layout 1 (no version key) kept the scheduler under
// "/signet-sched/<td>/" and the event log under "/signet-events/<td>/".
const Version = 2

// Space is the key layout of one trust domain.
type Space struct {
	td   spiffeid.TrustDomain
	root string
}

// For returns the key layout of td.
func For(td spiffeid.TrustDomain) Space { return Space{td: td, root: "/signet/" + td.Name() + "/"} }

// Root is the trust domain's prefix, "/signet/<td>/"; the store watches it.
func (s Space) Root() string { return s.root }

// CAState is the key of the sealed CA state shared by replicas on an
// external etcd.
func (s Space) CAState() string { return s.root + CADir + "state" }

// Schedule is the rotation scheduler's prefix.
func (s Space) Schedule() string { return s.root + ScheduleDir }

// Events is the rotation event log's prefix.
func (s Space) Events() string { return s.root + EventsDir }

// SecretPolicies is the secret policies' prefix.
func (s Space) SecretPolicies() string { return s.root + SecretPoliciesDir }

// Version is the key of the layout version.
func (s Space) Version() string { return s.root + VersionKey }

// moves are the prefixes of layout 1 that layout 2 moved below the root.
func (s Space) moves() []move {
	return []move{
		{from: "/signet-sched/" + s.td.Name() + "/", to: s.Schedule()},
		{from: "/signet-events/" + s.td.Name() + "/", to: s.Events()},
	}
}

type move struct{ from, to string }
