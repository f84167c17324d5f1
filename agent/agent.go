// Package agent runs the Signet agent: it attests to the server, keeps its
// agent SVID renewed, syncs the entries it is authorized for, mints workload
// keys locally and obtains their SVIDs by CSR, caches them on disk, and
// serves workloads over the SPIFFE Workload API.
package agent

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
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/agent/client"
	"github.com/signet-id/signet/agent/sds"
	agentsecrets "github.com/signet-id/signet/agent/secrets"
	"github.com/signet-id/signet/agent/workloadapi"
	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/pq/altsig"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/tlspolicy"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// Config configures an Agent.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// ServerAddresses are the servers' host:port addresses, tried in order.
	ServerAddresses []string
	// JoinToken attests the agent the first time (unused once it has an
	// SVID on disk, unless Reattest).
	JoinToken string
	// Reattest discards an agent SVID on disk and attests again with the
	// node evidence (for example a new join token).
	Reattest bool
	// NodeEvidence attests the agent the first time; default join-token
	// evidence from JoinToken.
	NodeEvidence NodeEvidence
	// DataDir keeps the agent SVID, its key, the bundle and cached workload
	// SVIDs (files mode 0600 in a 0700 directory).
	DataDir string
	// SocketPath is the Workload API Unix socket.
	SocketPath string
	// TrustBundle holds the server's bundle for the first connection
	// (bootstrap). Required unless InsecureBootstrap.
	TrustBundle []*x509.Certificate
	// InsecureBootstrap skips server verification on the first
	// connection, as SPIRE's insecure_bootstrap does. Never for production.
	InsecureBootstrap bool
	// AllowClassicalKEX permits classical-only TLS key exchange.
	AllowClassicalKEX bool
	// SyncInterval is the fallback poll interval when no push arrives.
	// Default 30s.
	SyncInterval time.Duration
	// WorkloadKeyFactory generates workload keys; default ECDSA P-256.
	Rand io.Reader
	// Clock drives renewal, sync polling and reconnect backoff (default
	// the wall clock). TLS handshakes check certificates on the wall
	// clock regardless.
	Clock    clock.Clock
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Attestor attests workloads; default the Unix attestor.
	Attestor WorkloadAttestor
	// SecretSinks write secrets brokered by the server to files (mode
	// 0400, replaced atomically on change).
	SecretSinks []agentsecrets.Sink
	// WorkloadLimits bound Workload API connections and calls per local
	// user (zero fields: workloadapi defaults).
	WorkloadLimits workloadapi.Limits
	// SDS names the resources of Envoy's SDS on the Workload API socket
	// (zero: SPIRE's defaults).
	SDS sds.Settings
	// X509SVIDCacheMaxSize bounds the workload X.509-SVIDs kept for
	// workloads seen recently (SPIRE's x509_svid_cache_max_size; zero:
	// DefaultX509SVIDCacheMaxSize). SVIDs are minted only for entries a
	// workload that attested matches; those of connected workloads are
	// kept beyond the bound.
	X509SVIDCacheMaxSize int
}

// WorkloadAttestor returns a workload's selectors from its pid.
type WorkloadAttestor interface {
	Attest(ctx context.Context, pid int32) ([]*types.Selector, error)
}

// Agent is a running Signet agent.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	cache *cache.Cache
	disk  *diskState
	m     agentMetrics

	mu        sync.Mutex
	agentSVID *cache.X509SVID
	bundle    *spiffebundle.Bundle
	federated map[spiffeid.TrustDomain]*spiffebundle.Bundle
	// entries are the authorized entries by ID. Only the session
	// goroutine (and Run, before it) writes entries.
	entries map[string]*types.Entry
	svids   map[string]*cache.X509SVID
	// dirtyEntries, dirtySVIDs and dirtyBundles are what changed since
	// the last publish (entry IDs), so the cache gets only the change.
	dirtyEntries, dirtySVIDs map[string]struct{}
	dirtyBundles             bool
	// pubMu orders publishes.
	pubMu sync.Mutex
	// wanted are the entries whose SVIDs workloads asked for; mintKick
	// asks the session to mint the missing ones.
	wanted    *wantSet
	mintKick  chan struct{}
	serverIdx int
	conn      *client.Client
	force     map[string]bool
	forceAll  bool
	// renewSelf: the server asked for every SVID to be renewed now,
	// the agent's own included.
	renewSelf bool
	// entriesGen counts events after which the entries must be reread;
	// fetchedGen is the count the held entries were read at.
	entriesGen, fetchedGen uint64
	// synced is set once entries were read from a server;
	// fallbackLogged once the agent said it reads them the old way.
	synced, fallbackLogged bool
	// pushLive is set while a server push stream is open.
	pushLive atomic.Bool
	svidRev  map[string]int64

	syncNow chan struct{}
	ready   chan struct{}

	// verifyErr is the last server certificate that failed verification;
	// sessionOK is set once a session synced. Run reads and clears both
	// after each session.
	verifyErr atomic.Pointer[error]
	// wrongTD is set when a server the bundle verifies names another
	// trust domain.
	wrongTD   atomic.Pointer[error]
	sessionOK atomic.Bool
	// notAttested is why the agent has no SVID yet (nil once attested).
	notAttested atomic.Pointer[error]
}

// New validates cfg and returns an Agent ready to Run.
func New(cfg Config) (*Agent, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("agent: trust domain is required (set trust_domain or --trust-domain)")
	}
	if len(cfg.ServerAddresses) == 0 {
		return nil, errors.New("agent: at least one server address is required (--server-address host:port)")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("agent: data directory is required (--data-dir)")
	}
	if cfg.SocketPath == "" {
		return nil, errors.New("agent: Workload API socket path is required (--socket-path)")
	}
	if err := cfg.SDS.Validate(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 30 * time.Second
	}
	if cfg.X509SVIDCacheMaxSize < 0 {
		return nil, fmt.Errorf("agent: x509_svid_cache_max_size %d is negative", cfg.X509SVIDCacheMaxSize)
	}
	if cfg.X509SVIDCacheMaxSize == 0 {
		cfg.X509SVIDCacheMaxSize = DefaultX509SVIDCacheMaxSize
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	a := &Agent{
		cfg:          cfg,
		log:          cfg.Logger,
		disk:         &diskState{dir: cfg.DataDir},
		svids:        map[string]*cache.X509SVID{},
		entries:      map[string]*types.Entry{},
		dirtyEntries: map[string]struct{}{},
		dirtySVIDs:   map[string]struct{}{},
		force:        map[string]bool{},
		svidRev:      map[string]int64{},
		federated:    map[spiffeid.TrustDomain]*spiffebundle.Bundle{},
		syncNow:      make(chan struct{}, 1),
		mintKick:     make(chan struct{}, 1),
		wanted:       newWantSet(cfg.X509SVIDCacheMaxSize),
		ready:        make(chan struct{}),
	}
	a.m = newAgentMetrics(cfg.Registry)
	cfg.Registry.MustRegister(newSVIDExpiry(a))
	a.cache = cache.New(cfg.TrustDomain, cache.WithClock(cfg.Clock), cache.WithLogger(cfg.Logger), cache.WithJWTMinter(jwtMinter{a}), cache.WithDemand(a.demand))
	return a, nil
}

// Ready is closed once the Workload API serves.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Cache returns the agent's identity cache.
func (a *Agent) Cache() *cache.Cache { return a.cache }

// AgentID returns the agent's SPIFFE ID, or the zero ID before attestation.
func (a *Agent) AgentID() spiffeid.ID {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.agentSVID == nil {
		return spiffeid.ID{}
	}
	id, _ := x509svid.IDFromCert(a.agentSVID.Chain[0])
	return id
}

func (a *Agent) newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), a.cfg.Rand)
	if err != nil {
		return nil, fmt.Errorf("agent: generate key: %w", err)
	}
	return k, nil
}

// csr builds a CSR for key. In a hybrid trust domain (its CA carries ML-DSA
// alternative signatures) it also generates an ML-DSA-44 key on the node and
// requests it as the subjectAltPublicKeyInfo; that key is returned too.
func (a *Agent) csr(key *ecdsa.PrivateKey) ([]byte, crypto.Signer, error) {
	tmpl := &x509.CertificateRequest{}
	var alt *mldsa.PrivateKey
	if a.hybrid() {
		var err error
		alt, err = mldsa.GenerateKey(a.cfg.Rand, mldsa.MLDSA44)
		if err != nil {
			return nil, nil, fmt.Errorf("agent: generate ML-DSA key: %w", err)
		}
		der, err := altsig.CreateCertificateRequest(a.cfg.Rand, tmpl, key, alt)
		if err != nil {
			return nil, nil, fmt.Errorf("agent: create hybrid CSR: %w", err)
		}
		return der, alt, nil
	}
	der, err := x509.CreateCertificateRequest(a.cfg.Rand, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: create CSR: %w", err)
	}
	return der, nil, nil
}

// hybrid reports whether the trust domain's CA uses the hybrid profile.
func (a *Agent) hybrid() bool {
	for _, c := range a.roots() {
		if altsig.HasAlt(c) {
			return true
		}
	}
	return false
}

// publish hands what changed since the last publish to the cache and,
// with persist, writes the whole state to disk.
func (a *Agent) publish(persist bool) {
	a.pubMu.Lock()
	defer a.pubMu.Unlock()
	a.mu.Lock()
	d := cache.Delta{SVIDs: make(map[string]*cache.X509SVID, len(a.dirtySVIDs))}
	if a.dirtyBundles {
		d.SetBundles, d.Bundle, d.Federated = true, a.bundle, maps.Clone(a.federated)
	}
	for id := range a.dirtyEntries {
		if e, ok := a.entries[id]; ok {
			d.Entries = append(d.Entries, e)
		} else {
			d.RemoveEntries = append(d.RemoveEntries, id)
		}
	}
	for id := range a.dirtySVIDs {
		if s, ok := a.svids[id]; ok {
			d.SVIDs[id] = s
		} else if _, ok := a.entries[id]; ok {
			d.RemoveSVIDs = append(d.RemoveSVIDs, id)
		}
	}
	a.dirtyBundles = false
	clear(a.dirtyEntries)
	clear(a.dirtySVIDs)
	var snap persisted
	if persist {
		snap = persisted{Bundle: a.bundle, Entries: a.entriesWithSVIDs(), SVIDs: maps.Clone(a.svids), Federated: maps.Clone(a.federated)}
	}
	a.mu.Unlock()
	a.cache.Apply(d)
	if !persist {
		return
	}
	if err := a.disk.saveCache(snap); err != nil {
		a.log.Warn("failed to persist SVID cache", "error", err)
	}
}

// entriesWithSVIDs returns the entries that have an SVID, in ID order:
// what the disk copy needs to serve workloads before the server answers
// (the rest is synced again, in full, after a restart). Callers hold a.mu.
func (a *Agent) entriesWithSVIDs() []*types.Entry {
	out := make([]*types.Entry, 0, len(a.svids))
	for _, id := range slices.Sorted(maps.Keys(a.svids)) {
		if e, ok := a.entries[id]; ok {
			out = append(out, e)
		}
	}
	return out
}

// setEntry adds or replaces an entry; removeEntry drops one and its
// SVID; setSVID sets an entry's SVID. Callers hold a.mu.
func (a *Agent) setEntry(e *types.Entry) {
	a.entries[e.Id] = e
	a.dirtyEntries[e.Id] = struct{}{}
}

func (a *Agent) removeEntry(id string) {
	a.wanted.remove(id)
	delete(a.entries, id)
	delete(a.svids, id)
	delete(a.svidRev, id)
	a.dirtyEntries[id] = struct{}{}
	a.dirtySVIDs[id] = struct{}{}
}

func (a *Agent) setSVID(id string, s *cache.X509SVID, rev int64) {
	a.svids[id] = s
	a.svidRev[id] = rev
	a.dirtySVIDs[id] = struct{}{}
}

// Run attests (if needed), serves the Workload API, and keeps everything in
// sync until ctx is done.
func (a *Agent) Run(ctx context.Context) error {
	unlock, err := lockDataDir(a.cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	if a.cfg.InsecureBootstrap {
		a.log.Warn("insecure_bootstrap: the first connection to the server is not verified, so anyone who can intercept it "+
			"can hand this agent a false bundle; use trust_bundle_path (--trust-bundle) outside tests", "insecure_bootstrap", true)
	}
	// Serve cached state at once, before reaching the server.
	if snap, err := a.disk.loadCache(a.cfg.TrustDomain); err != nil {
		a.log.Warn("ignoring unreadable SVID cache", "error", err)
	} else if snap != nil {
		a.mu.Lock()
		a.bundle, a.dirtyBundles = snap.Bundle, true
		for _, e := range snap.Entries {
			a.setEntry(e)
			if s, ok := snap.SVIDs[e.Id]; ok {
				a.setSVID(e.Id, s, e.RevisionNumber)
				a.wanted.touch(e.Id) // asked for before the restart
			}
		}
		for td, b := range snap.Federated {
			a.federated[td] = b
		}
		a.mu.Unlock()
		a.publish(false)
		a.log.Info("serving cached SVIDs", "count", len(snap.SVIDs))
	}
	if s, err := a.disk.loadAgentSVID(); err != nil {
		a.log.Warn("ignoring unreadable agent SVID", "error", err)
	} else if s != nil && a.cfg.Clock.Now().Before(s.Chain[0].NotAfter) {
		a.useCachedSVID(s)
	}
	if a.AgentID().IsZero() {
		reason := errors.New("connecting to the server")
		a.notAttested.Store(&reason)
	}

	wl, err := a.serveWorkloadAPI(ctx)
	if err != nil {
		return err
	}
	defer wl()
	close(a.ready)
	if err := a.loop(ctx); err != nil {
		return err
	}
	a.log.Info("agent stopped")
	return nil
}

// useCachedSVID adopts the agent SVID found on disk, unless Reattest asks
// to attest again. A join token given beside a cached SVID is not used:
// say so, and how to use it.
func (a *Agent) useCachedSVID(s *cache.X509SVID) {
	id, _ := x509svid.IDFromCert(s.Chain[0])
	if a.cfg.Reattest {
		a.log.Info("discarding the agent SVID on disk to attest again", "agent_id", id.String())
		return
	}
	if a.cfg.JoinToken != "" {
		a.log.Warn("join token not used: the agent already has an SVID on disk and keeps its identity; "+
			"to attest again with the token, restart with --reattest (or remove "+agentSVIDFile+" from the data directory)",
			"agent_id", id.String(), "data_dir", a.cfg.DataDir)
	}
	a.mu.Lock()
	a.agentSVID = s
	a.mu.Unlock()
}

// loop runs server sessions until ctx is done or a permanent error: after
// a failed one it waits with exponential backoff and jitter (reset by a
// session that synced), and re-attests when the server refuses the agent
// SVID.
func (a *Agent) loop(ctx context.Context) error {
	b := backoff{rand: a.cfg.Rand}
	for ctx.Err() == nil {
		a.sessionOK.Store(false)
		a.verifyErr.Store(nil)
		a.wrongTD.Store(nil)
		err := a.session(ctx)
		if ctx.Err() != nil {
			break
		}
		ve := a.verifyErr.Load()
		if a.sessionOK.Load() {
			ve = nil // a session synced: the server was verified
			b.reset()
		} else if ve == nil && !a.AgentID().IsZero() && serverRefusedCert(err) {
			// The server, verified, refuses the agent SVID in the TLS
			// handshake (its CA no longer chains it: a reset server).
			err = fmt.Errorf("%w: %w", errReattest, err)
		}
		if wt := a.wrongTD.Load(); wt != nil && !a.sessionOK.Load() {
			// A server the bundle verifies names another trust domain.
			err = fmt.Errorf("%w: %w", ErrPermanent, *wt)
		}
		if ve != nil && !errors.Is(err, ErrPermanent) {
			// Nothing on the address proved it is the server: someone
			// else may answer there. Not a reason to stop.
			err = a.untrustedServerError(*ve)
		}
		if a.AgentID().IsZero() && err != nil {
			a.notAttested.Store(&err)
		} else {
			a.notAttested.Store(nil)
		}
		if errors.Is(err, ErrPermanent) {
			a.log.Error("agent stopping: retrying cannot help", "error", err)
			return err
		}
		a.m.reconnects.Inc()
		if errors.Is(err, errRenewed) {
			b.reset()
		}
		wait := b.next()
		retryIn := wait.Round(time.Millisecond).String()
		switch {
		case errors.Is(err, errRenewed):
			a.log.Info("agent SVID renewed; reconnecting with it", "retry_in", retryIn)
		case errors.Is(err, errReattest):
			a.log.Warn("agent SVID rejected; attesting again", "error", err, "retry_in", retryIn)
			a.mu.Lock()
			a.agentSVID = nil
			a.mu.Unlock()
			a.disk.removeAgentSVID()
			a.notAttested.Store(&err)
		case ve != nil:
			a.log.Error("server not verified; retrying", "error", err, "retry_in", retryIn)
		case err != nil:
			a.log.Warn("server session ended; retrying", "error", err, "retry_in", retryIn)
		}
		clock.Sleep(ctx, a.cfg.Clock, wait)
	}
	return nil
}

// notReady is the Workload API's view of the agent: why it cannot issue
// identities yet, or nil once attested.
func (a *Agent) notReady() error {
	if e := a.notAttested.Load(); e != nil && a.AgentID().IsZero() {
		return *e
	}
	return nil
}

// baseTLS returns the client TLS configuration for the server: the
// policy the server applies too (tlspolicy).
func (a *Agent) baseTLS() *tls.Config {
	return tlspolicy.Policy{AllowClassical: a.cfg.AllowClassicalKEX}.Config()
}
