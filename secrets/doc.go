// Package secrets is Signet's Vault broker: the server's Vault client and
// its authentication (token, AppRole, and jwt auth with a JWT-SVID), secret
// policies that map SPIFFE ID patterns to Vault paths (stored in etcd), and
// a Broker that reads KV v2 and leased secrets, pushes new values when a
// KV v2 version changes or a lease is renewed or replaced, renews renewable
// leases at about 2/3 of their TTL, re-reads non-renewable ones before 85%
// of their TTL, and revokes the leases it created when a policy or an entry
// is deleted.
//
// Secret values never leave memory except towards the subscriber: they are
// not logged, not put in errors or metrics, and not written to etcd. Only
// metadata is: policy, path, KV version, the SHA-256 of a lease ID, TTLs.
//
// # Leased secrets
//
// A policy with Engine EngineLeased names a Vault path whose response
// carries a lease: either a secret with a lease ID (dynamic secret engines:
// renewed through sys/leases/renew, revoked through sys/leases/revoke) or an
// auth block (auth/token/create and other token-issuing paths: renewed
// through auth/token/renew-accessor, revoked by accessor). With Params the
// path is written (POST) with those parameters, otherwise it is read.
//
// # Scheduling
//
// Each secret a subscriber watches has one goroutine that keeps it
// current. KV v2 secrets are polled on the injected Clock. Lease renewals
// (at 2/3 of the TTL) and replacements (at 85%), as the renewal policy in
// rotation/renewal sets them, are timed by the rotation scheduler when
// BrokerConfig.Scheduler is set: one KindLeaseItem item per lease, whose
// payload names the replica, policy, SPIFFE ID and the hash of the lease
// ID, never the lease ID or token accessor, which stay in the memory of
// the replica that streams the value. The server runs the item through
// HandleLease on the replica holding the lease, which acts and schedules
// the next item. Without a scheduler (or while etcd refuses the item) the
// goroutine times the lease itself on Clock. Every lease event
// (vault.lease.issued, .renewed, .revoked, .expired) and every new KV
// version (secret.version.changed) goes to the rotation event log through
// an EventSink, with the lease ID hashed.
//
// A secret nobody watches any more is kept (and its lease renewed) for
// IdleTimeout, so that an agent reconnecting does not cause a new lease,
// then dropped and its lease revoked. When Vault fails, subscribers keep
// the last value and reads are retried with capped backoff.
package secrets
