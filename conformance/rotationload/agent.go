package rotationload

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signet-id/signet/agent/client"
	"github.com/signet-id/signet/attest/jointoken"
	"github.com/signet-id/signet/ca"
	notifyv1 "github.com/signet-id/signet/proto/signet/notify/v1"
	"github.com/signet-id/signet/spireid"
	"github.com/signet-id/signet/tlspolicy"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// rpcTimeout bounds one exchange (sync, attestation, renewal) of a
// simulated agent.
const rpcTimeout = 2 * time.Minute

// AgentConfig configures a simulated agent.
type AgentConfig struct {
	TrustDomain   spiffeid.TrustDomain
	ServerAddress string
	JoinToken     string
	// TrustBundle verifies the server until the agent has fetched the
	// bundle from it.
	TrustBundle []*x509.Certificate
	// ReuseKey makes the agent generate one key and CSR per round and use
	// them for all its SVIDs of that round, instead of a fresh key and CSR
	// for every SVID (what the real agent does).
	ReuseKey bool
	// Target returns the X.509 authority the agent's SVIDs should chain to
	// ("" while there is none). After every round, an agent holding only
	// SVIDs of the target (its own included) calls Converged once for it.
	Target    func() string
	Converged func(agent spiffeid.ID, authorityID string, at time.Time)
	// Rand is the randomness for keys and CSRs (default crypto/rand).
	Rand io.Reader
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Stats counts what a simulated agent did.
type Stats struct {
	// Notifications received, by kind.
	Notifications map[string]int
	// Syncs is how many times the agent fetched the bundle and its entries.
	Syncs int
	// SVIDs is how many workload X.509-SVIDs it received.
	SVIDs int
	// Renewals is how many times it renewed its own SVID.
	Renewals int
}

// Agent is a simulated Signet agent. It speaks the agent API through the
// real agent's client (agent/client) but has
// no Workload API: it keeps the X.509-SVIDs of all its entries in memory
// and reacts to push notifications like the real agent: a renew-now
// notification makes it re-request every SVID, then renew its own SVID and
// reconnect with it; any other notification makes it resync.
type Agent struct {
	cfg AgentConfig
	id  spiffeid.ID

	mu        sync.Mutex
	roots     []*x509.Certificate
	own       *heldSVID
	held      map[string]*heldSVID // by entry ID
	stats     Stats
	converged string // authority ID last reported to Converged

	// Push state, written by the watch goroutine.
	pmu      sync.Mutex
	renewAll bool
	renewIDs map[string]bool
	resync   bool
	wake     chan struct{}

	// busy is set while the Run loop acts on notifications; received
	// counts the notifications received.
	busy     atomic.Bool
	received atomic.Int64

	// sess is used by the Run goroutine only.
	sess *session
}

type heldSVID struct {
	chain []*x509.Certificate
	key   crypto.Signer
}

type session struct {
	conn     *grpc.ClientConn
	client   *client.Client
	cancel   context.CancelFunc
	watchErr chan error
}

func (s *session) close() {
	s.cancel()
	_ = s.conn.Close()
}

// NewAgent returns a simulated agent that will attest with cfg.JoinToken.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.TrustDomain.IsZero() || cfg.ServerAddress == "" || cfg.JoinToken == "" || len(cfg.TrustBundle) == 0 {
		return nil, errors.New("rotationload: agent needs a trust domain, a server address, a join token and a trust bundle")
	}
	id, err := spiffeid.FromSegments(cfg.TrustDomain, "spire", "agent", "join_token", cfg.JoinToken)
	if err != nil {
		return nil, fmt.Errorf("rotationload: join token is not usable in an agent ID: %w", err)
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Target == nil {
		cfg.Target = func() string { return "" }
	}
	return &Agent{
		cfg:      cfg,
		id:       id,
		roots:    cfg.TrustBundle,
		held:     map[string]*heldSVID{},
		stats:    Stats{Notifications: map[string]int{}},
		renewIDs: map[string]bool{},
		wake:     make(chan struct{}, 1),
	}, nil
}

// ID returns the agent's SPIFFE ID.
func (a *Agent) ID() spiffeid.ID { return a.id }

// Run attests, connects with the agent SVID, opens the push stream and
// obtains an X.509-SVID for every authorized entry; then it calls loaded
// (if not nil) and serves push notifications until ctx is done (nil) or
// something fails.
func (a *Agent) Run(ctx context.Context, loaded func()) error {
	defer func() {
		if a.sess != nil {
			a.sess.close()
		}
	}()
	if err := a.attest(ctx); err != nil {
		return err
	}
	if err := a.connect(ctx); err != nil {
		return err
	}
	if err := a.sync(ctx, nil); err != nil {
		return err
	}
	if loaded != nil {
		loaded()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-a.sess.watchErr:
			return fmt.Errorf("rotationload: agent %s: push stream: %w", a.id, err)
		case <-a.wake:
		}
		a.busy.Store(true)
		a.pmu.Lock()
		all, ids, resync := a.renewAll, a.renewIDs, a.resync
		a.renewAll, a.renewIDs, a.resync = false, map[string]bool{}, false
		a.pmu.Unlock()
		var err error
		switch {
		case all || len(ids) > 0:
			err = a.renew(ctx, all, ids)
		case resync:
			err = a.sync(ctx, nil)
		}
		a.busy.Store(false)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		a.report()
	}
}

// Idle reports whether the agent has acted on every notification it
// received.
func (a *Agent) Idle() bool {
	if a.busy.Load() {
		return false
	}
	a.pmu.Lock()
	defer a.pmu.Unlock()
	return !a.renewAll && len(a.renewIDs) == 0 && !a.resync
}

// Received returns how many notifications the agent received.
func (a *Agent) Received() int64 { return a.received.Load() }

// Roots returns the X.509 authorities the agent trusts.
func (a *Agent) Roots() []*x509.Certificate {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.roots
}

// Holdings returns the agent's own X.509-SVID chain and the chains it
// holds by entry ID.
func (a *Agent) Holdings() (own []*x509.Certificate, byEntry map[string][]*x509.Certificate) {
	a.mu.Lock()
	defer a.mu.Unlock()
	byEntry = make(map[string][]*x509.Certificate, len(a.held))
	for id, h := range a.held {
		byEntry[id] = h.chain
	}
	if a.own != nil {
		own = a.own.chain
	}
	return own, byEntry
}

// Stats returns a copy of the agent's counters.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stats
	s.Notifications = make(map[string]int, len(a.stats.Notifications))
	for k, v := range a.stats.Notifications {
		s.Notifications[k] = v
	}
	return s
}

func (a *Agent) newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), a.cfg.Rand)
	if err != nil {
		return nil, nil, fmt.Errorf("rotationload: generate key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(a.cfg.Rand, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("rotationload: create CSR: %w", err)
	}
	return key, csr, nil
}

// dial returns a connection to the server over TLS 1.3 with X25519MLKEM768
// key exchange, verifying that the server presents the SPIFFE ID of the
// trust domain's server with an SVID chaining to roots, and presenting
// client (if not nil).
func (a *Agent) dial(roots []*x509.Certificate, client *heldSVID) (*grpc.ClientConn, error) {
	b := x509bundle.FromX509Authorities(a.cfg.TrustDomain, roots)
	serverID := spireid.ServerID(a.cfg.TrustDomain)
	tc := &tls.Config{
		MinVersion:       tlspolicy.MinVersion,
		CurvePreferences: tlspolicy.Policy{}.CurvePreferences(),
		// The server is verified by its SPIFFE ID below, not a host name.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, _, err := x509svid.ParseAndVerify(raw, b)
			if err != nil {
				return fmt.Errorf("rotationload: server certificate: %w", err)
			}
			if id != serverID {
				return fmt.Errorf("rotationload: server presented %q, want %q", id, serverID)
			}
			return nil
		},
	}
	if client != nil {
		cert := &tls.Certificate{PrivateKey: client.key, Leaf: client.chain[0]}
		for _, c := range client.chain {
			cert.Certificate = append(cert.Certificate, c.Raw)
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	conn, err := grpc.NewClient(a.cfg.ServerAddress, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return nil, fmt.Errorf("rotationload: dial %s: %w", a.cfg.ServerAddress, err)
	}
	return conn, nil
}

// attest obtains the agent SVID with the join token over server-only TLS.
func (a *Agent) attest(ctx context.Context) error {
	conn, err := a.dial(a.Roots(), nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	key, csr, err := a.newKey()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	res, err := client.New(conn).AttestAgent(ctx, jointoken.NewEvidence(a.cfg.JoinToken), csr)
	if err != nil {
		return fmt.Errorf("rotationload: agent %s: attest: %w", a.id, err)
	}
	own, err := a.parseSVID(res.SVID.GetCertChain(), key, a.id)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.own = own
	a.mu.Unlock()
	return nil
}

// connect opens a session authenticated by the agent's current SVID and
// waits for the push stream's hello, so notifications sent from then on
// reach the agent. It replaces (and closes) the previous session.
func (a *Agent) connect(ctx context.Context) error {
	a.mu.Lock()
	roots, own := a.roots, a.own
	a.mu.Unlock()
	conn, err := a.dial(roots, own)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	s := &session{
		conn:     conn,
		client:   client.New(conn),
		cancel:   cancel,
		watchErr: make(chan error, 1),
	}
	stream, err := s.client.Watch(sctx)
	if err == nil {
		var hello *notifyv1.Notification
		if hello, err = stream.Recv(); err == nil && hello.Kind != notifyv1.Notification_KIND_HELLO {
			err = fmt.Errorf("first message is %v, want a hello", hello.Kind)
		}
	}
	if err != nil {
		s.close()
		return fmt.Errorf("rotationload: agent %s: open push stream: %w", a.id, err)
	}
	go a.watch(sctx, stream, s.watchErr)
	if a.sess != nil {
		a.sess.close()
	}
	a.sess = s
	return nil
}

// watch records push notifications and wakes the Run loop.
func (a *Agent) watch(ctx context.Context, stream notifyv1.Notifier_WatchClient, errc chan<- error) {
	for {
		n, err := stream.Recv()
		if err != nil {
			if ctx.Err() == nil {
				errc <- err
			}
			return
		}
		a.mu.Lock()
		a.stats.Notifications[n.Kind.String()]++
		a.mu.Unlock()
		a.received.Add(1)
		a.pmu.Lock()
		switch n.Kind {
		case notifyv1.Notification_KIND_RENEW_NOW:
			if len(n.EntryIds) == 0 {
				a.renewAll = true
			}
			for _, id := range n.EntryIds {
				a.renewIDs[id] = true
			}
		case notifyv1.Notification_KIND_ENTRIES_CHANGED, notifyv1.Notification_KIND_BUNDLE_CHANGED:
			a.resync = true
		}
		a.pmu.Unlock()
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// sync fetches the bundle and the authorized entries and requests SVIDs
// for the entries the agent holds none for, or for which force is true.
func (a *Agent) sync(ctx context.Context, force func(entryID string) bool) error {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	s := a.sess
	pb, err := s.client.Bundle(ctx)
	if err != nil {
		return fmt.Errorf("rotationload: agent %s: get bundle: %w", a.id, err)
	}
	var roots []*x509.Certificate
	for _, c := range pb.X509Authorities {
		cert, err := x509.ParseCertificate(c.Asn1)
		if err != nil {
			return fmt.Errorf("rotationload: agent %s: bundle: %w", a.id, err)
		}
		roots = append(roots, cert)
	}
	if len(roots) == 0 {
		return fmt.Errorf("rotationload: agent %s: bundle has no X.509 authority", a.id)
	}
	entries, err := s.client.AuthorizedEntries(ctx)
	if err != nil {
		return fmt.Errorf("rotationload: agent %s: get authorized entries: %w", a.id, err)
	}
	authorized := make(map[string]bool, len(entries))
	var due []*types.Entry
	a.mu.Lock()
	a.roots = roots
	a.stats.Syncs++
	for _, e := range entries {
		authorized[e.Id] = true
		if a.held[e.Id] == nil || (force != nil && force(e.Id)) {
			due = append(due, e)
		}
	}
	for id := range a.held {
		if !authorized[id] {
			delete(a.held, id)
		}
	}
	a.mu.Unlock()
	return a.issue(ctx, due)
}

// issue requests X.509-SVIDs for entries, at most client.MaxBatch per call.
func (a *Agent) issue(ctx context.Context, entries []*types.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	var shared *ecdsa.PrivateKey
	var sharedCSR []byte
	if a.cfg.ReuseKey {
		var err error
		if shared, sharedCSR, err = a.newKey(); err != nil {
			return err
		}
	}
	for start := 0; start < len(entries); start += client.MaxBatch {
		chunk := entries[start:min(start+client.MaxBatch, len(entries))]
		reqs := make([]client.X509SVIDRequest, len(chunk))
		keys := make([]*ecdsa.PrivateKey, len(chunk))
		for i, e := range chunk {
			key, csr := shared, sharedCSR
			if key == nil {
				var err error
				if key, csr, err = a.newKey(); err != nil {
					return err
				}
			}
			keys[i] = key
			reqs[i] = client.X509SVIDRequest{EntryID: e.Id, CSR: csr}
		}
		results, err := a.sess.client.NewX509SVIDs(ctx, reqs)
		if err != nil {
			return fmt.Errorf("rotationload: agent %s: BatchNewX509SVID: %w", a.id, err)
		}
		if len(results) != len(chunk) {
			return fmt.Errorf("rotationload: agent %s: BatchNewX509SVID answered %d results for %d requests", a.id, len(results), len(chunk))
		}
		got := make(map[string]*heldSVID, len(chunk))
		for i, r := range results {
			e := chunk[i]
			if r.Err != nil {
				return fmt.Errorf("rotationload: agent %s: SVID for entry %s: %v %s", a.id, e.Id, status.Code(r.Err), status.Convert(r.Err).Message())
			}
			want, err := entryID(e)
			if err != nil {
				return fmt.Errorf("rotationload: agent %s: entry %s: %w", a.id, e.Id, err)
			}
			h, err := a.parseSVID(r.SVID.GetCertChain(), keys[i], want)
			if err != nil {
				return err
			}
			got[e.Id] = h
		}
		a.mu.Lock()
		for id, h := range got {
			a.held[id] = h
		}
		a.stats.SVIDs += len(got)
		a.mu.Unlock()
	}
	return nil
}

// renew re-requests the SVIDs named (all of them if all) and, if all,
// renews the agent's own SVID and reconnects with it: the server refuses
// a superseded agent SVID.
func (a *Agent) renew(ctx context.Context, all bool, ids map[string]bool) error {
	if err := a.sync(ctx, func(id string) bool { return all || ids[id] }); err != nil {
		return err
	}
	if !all {
		return nil
	}
	key, csr, err := a.newKey()
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	svid, err := a.sess.client.RenewAgent(rctx, csr)
	if err != nil {
		return fmt.Errorf("rotationload: agent %s: RenewAgent: %w", a.id, err)
	}
	own, err := a.parseSVID(svid.GetCertChain(), key, a.id)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.own = own
	a.stats.Renewals++
	a.mu.Unlock()
	return a.connect(ctx)
}

// report calls Converged once the agent holds only SVIDs of the target
// authority.
func (a *Agent) report() {
	target := a.cfg.Target()
	if target == "" || a.cfg.Converged == nil {
		return
	}
	a.mu.Lock()
	done := a.converged != target && a.own != nil && ca.IssuerAuthorityID(a.own.chain[0]) == target
	for _, h := range a.held {
		if !done {
			break
		}
		done = ca.IssuerAuthorityID(h.chain[0]) == target
	}
	if done {
		a.converged = target
	}
	a.mu.Unlock()
	if done {
		a.cfg.Converged(a.id, target, a.cfg.Now())
	}
}

// parseSVID parses an X.509-SVID chain and checks that it names want and
// certifies key.
func (a *Agent) parseSVID(ders [][]byte, key *ecdsa.PrivateKey, want spiffeid.ID) (*heldSVID, error) {
	if len(ders) == 0 {
		return nil, fmt.Errorf("rotationload: agent %s: empty SVID chain for %s", a.id, want)
	}
	chain := make([]*x509.Certificate, 0, len(ders))
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("rotationload: agent %s: SVID for %s: %w", a.id, want, err)
		}
		chain = append(chain, c)
	}
	id, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return nil, fmt.Errorf("rotationload: agent %s: SVID for %s: %w", a.id, want, err)
	}
	if id != want {
		return nil, fmt.Errorf("rotationload: agent %s: SVID names %s, want %s", a.id, id, want)
	}
	if !key.PublicKey.Equal(chain[0].PublicKey) {
		return nil, fmt.Errorf("rotationload: agent %s: SVID for %s certifies another key", a.id, want)
	}
	return &heldSVID{chain: chain, key: key}, nil
}

// entryID returns the SPIFFE ID an entry names.
func entryID(e *types.Entry) (spiffeid.ID, error) {
	td, err := spiffeid.TrustDomainFromString(e.GetSpiffeId().GetTrustDomain())
	if err != nil {
		return spiffeid.ID{}, err
	}
	return spiffeid.FromPath(td, e.GetSpiffeId().GetPath())
}
