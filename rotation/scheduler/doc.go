// Package scheduler is Signet's durable, etcd-backed rotation scheduler.
//
// Every credential with an expiry (workload and agent SVIDs, CA slots, JWT
// keys, federated bundle refreshes, Vault leases) has one Item in
// etcd: an ID, a Kind, the time it is due, the credential's NotAfter, an
// opaque payload and a retry counter. Any server replica may Schedule,
// Cancel or read items. One replica at a time, elected through
// go.etcd.io/etcd/client/v3/concurrency, is the leader: it scans the due
// index, claims due items and runs the Handler registered for their Kind,
// then deletes the item, reschedules it, or retries it with capped
// exponential backoff.
//
// # Key layout
//
// Below a prefix (default "/signet/sched/"):
//
//	items/<id>                 the Item (JSON)
//	due/<20-digit nanos>/<id>  due index: present while the item is pending
//	inflight/<id>              claim record while a handler runs
//	leader/<lease>             election keys (concurrency.Election)
//
// A pending item's record and due-index key are written in one
// transaction, so they always carry the same ModRevision; a range scan of
// due/ up to the current time yields exactly the due items, oldest first.
//
// # Fencing
//
// Every write the leader makes (claim, complete, reschedule, requeue)
// is one transaction that includes
//
//	clientv3.Compare(clientv3.CreateRevision(leaderKey), "=", leaderRev)
//
// The leader key is bound to the leader's session lease, so once that lease
// is revoked or expires the compare fails for ever after (a new leader has a
// different key and revision) and a deposed leader can neither claim nor
// complete anything, however late its requests arrive. Handlers receive the
// same fence through the context (see TermFrom) and should include it in
// their own etcd transactions.
//
// # Delivery
//
// Delivery is at least once. An item is claimed (moved from the due index
// to inflight/<id>, tagged with the leader revision) before its handler
// runs, and completed in a second fenced transaction. If the leader dies
// between the two, the next leader finds the claim tagged with an older
// revision and puts the item back in the due index, so it runs again:
// handlers must be idempotent. At most the configured concurrency of items
// can be in flight, which bounds the re-runs per leader change.
package scheduler
