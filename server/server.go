// Package server runs the Signet server: it opens etcd (embedded or
// external), loads the CA, serves the SPIRE server APIs to agents over mTLS
// and to admins over a local Unix socket, and pushes changes to agents.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/attest/jointoken"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/issuer"
	auditv1 "github.com/signet-id/signet/proto/signet/audit/v1"
	cav1 "github.com/signet-id/signet/proto/signet/ca/v1"
	notifyv1 "github.com/signet-id/signet/proto/signet/notify/v1"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/rotation/scheduler"
	"github.com/signet-id/signet/secrets"
	agentapi "github.com/signet-id/signet/server/api/agent"
	auditapi "github.com/signet-id/signet/server/api/audit"
	bundleapi "github.com/signet-id/signet/server/api/bundle"
	entryapi "github.com/signet-id/signet/server/api/entry"
	"github.com/signet-id/signet/server/api/localauthority"
	secretsapi "github.com/signet-id/signet/server/api/secrets"
	svidapi "github.com/signet-id/signet/server/api/svid"
	trustdomainapi "github.com/signet-id/signet/server/api/trustdomain"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/federation"
	"github.com/signet-id/signet/server/keyspace"
	"github.com/signet-id/signet/server/limits"
	"github.com/signet-id/signet/server/notify"
	"github.com/signet-id/signet/server/store"
	"github.com/signet-id/signet/telemetry"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Config configures a Server.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// DataDir holds the embedded etcd data and the CA keys.
	DataDir string
	// BindAddress is the agent listener (host:port). Default 0.0.0.0:8081.
	BindAddress string
	// AdminSocket is the admin API's Unix socket. Default
	// DataDir/private/api.sock.
	AdminSocket string
	// Etcd selects an external etcd cluster; empty Endpoints embeds one.
	// Replicas sharing an external cluster share the CA too, sealed in etcd
	// with the key-encryption key in CAKEKFile.
	Etcd EtcdConfig
	// CAKEKFile holds the 32-byte key that seals the CA state in etcd
	// (required with an external etcd).
	CAKEKFile string
	// State bounds the etcd state (quota, compaction, event log retention).
	State StateConfig

	CATTL        time.Duration
	X509SVIDTTL  time.Duration
	JWTSVIDTTL   time.Duration
	AgentSVIDTTL time.Duration

	// Profile is the trust domain's credential profile: classic (default)
	// or hybrid. pq is refused: Go 1.26's crypto/tls cannot authenticate
	// with ML-DSA certificates, so agents could not connect.
	Profile ca.Profile

	TLS TLSPolicy
	// Limits bound what one peer of the agent listener can make the
	// server do (docs/limits.md); zero fields take the defaults.
	Limits limits.Config
	// AdminIDs are SPIFFE IDs allowed to call admin RPCs over mTLS, in
	// addition to entries marked admin.
	AdminIDs []spiffeid.ID
	// RotationInterval is how often the server checks its own SVID (the
	// CA lifecycle is driven by the rotation scheduler). Default 10s.
	RotationInterval time.Duration
	// Vault, if set, makes the server a secrets broker for workloads.
	Vault *VaultConfig
	// KeyManager, if set, creates and holds the CA and JWT signing keys
	// (PKCS#11, cloud KMS, Vault Transit); the CA state keeps references.
	KeyManager *KeyManagerConfig
	// UpstreamDisk, if set, is an operator-provided CA that signs the
	// server's X.509 CA (SPIRE's UpstreamAuthority "disk").
	UpstreamDisk *UpstreamDiskConfig
	// UpstreamSPIRE, if set, is an upstream SPIRE server that signs the
	// server's X.509 CA (SPIRE's UpstreamAuthority "spire").
	UpstreamSPIRE *UpstreamSPIREConfig
	// OIDC, if set, serves the OIDC discovery provider (discovery document
	// and JWKS) for Vault's jwt auth method, cloud token services and other
	// relying parties.
	OIDC *OIDCConfig
	// JWTIssuer is the iss claim of JWT-SVIDs (SPIRE's jwt_issuer); empty
	// with OIDC set: the provider's issuer. Without either JWT-SVIDs carry
	// no iss.
	JWTIssuer string

	// NodeAttestors are node attestation methods served besides join
	// tokens, which are always served.
	NodeAttestors []agentapi.NodeAttestor

	// Federation configures the bundle endpoint and static federation
	// relationships.
	Federation FederationConfig

	// Notifiers publish the bundle on every change (SPIRE's Notifier
	// plugins, e.g. Notifier "k8sbundle"); they are built at start.
	Notifiers []NotifierFactory

	// CheckpointInterval is how often a signed checkpoint is appended to
	// the rotation event log. Default 5m.
	CheckpointInterval time.Duration

	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Clock is the server's time for issuing, renewal schedules, the
	// event log and its loops (default the wall clock).
	Clock clock.Clock
}

// EtcdConfig points the server at an external etcd cluster.
type EtcdConfig struct {
	Endpoints []string
	CertFile  string
	KeyFile   string
	CAFile    string
	// Insecure accepts plaintext endpoints or no client certificate.
	Insecure bool
}

// Server is a running Signet server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	store  *store.Store
	ca     *ca.Manager
	issuer *issuer.Issuer
	hub    *notify.Hub
	etcd   *clientv3.Client
	sched  *scheduler.Scheduler
	// renewals queues SVID renewal items for the scheduler.
	renewals chan scheduler.Item
	events   *events
	secrets  *secretsapi.API
	// leases is the Vault broker whose lease items the scheduler runs.
	leases *secrets.Broker
	// oidcIssuer is the OIDC issuer URL when OIDC is set; oidcLis its
	// listener, opened before the issuer is built (the default issuer
	// names the port).
	oidcIssuer string
	oidcLis    net.Listener
	evlog      *eventlog.Log
	metrics    metrics

	serverCert atomic.Pointer[tls.Certificate]
	certExpiry atomic.Int64

	// lastAuthorities is the CA state last logged (rotation loop only).
	lastAuthorities authoritySnapshot
	// authorities is lastAuthorities for the CA expiry gauges (scrapes).
	authorities atomic.Pointer[authoritySnapshot]

	ready chan struct{}
	// caKick asks the rotation loop to react to an admin CA change.
	caKick    chan struct{}
	agentAddr atomic.Pointer[net.TCPAddr]

	// caUnscheduled is set while the CA item could not be written.
	caUnscheduled atomic.Bool
	rpc           *telemetry.RPCMetrics

	refresher          *federation.Refresher
	bundleEndpointAddr atomic.Pointer[net.TCPAddr]
	// notifiers are built from cfg.Notifiers before the subsystems run.
	notifiers []Notifier
}

type metrics struct {
	kex             *prometheus.CounterVec
	renewalsDropped prometheus.Counter
	attestFailures  *prometheus.CounterVec
}

// New validates cfg and returns a Server ready to Run.
func New(cfg Config) (*Server, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("server: trust domain is required (set trust_domain or --trust-domain)")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("server: data directory is required (set data_dir or --data-dir)")
	}
	switch cfg.Profile {
	case "":
		cfg.Profile = ca.ProfileClassic
	case ca.ProfileClassic, ca.ProfileHybrid:
	case ca.ProfilePQ:
		return nil, errors.New("server: credential profile pq cannot be served yet: Go 1.26 crypto/tls cannot authenticate agents and servers with ML-DSA certificates; use hybrid (ECDSA chain plus ML-DSA alternative signatures)")
	default:
		return nil, fmt.Errorf("server: unknown credential profile %q (use classic or hybrid)", cfg.Profile)
	}
	if cfg.BindAddress == "" {
		cfg.BindAddress = "0.0.0.0:8081"
	}
	if cfg.AdminSocket == "" {
		cfg.AdminSocket = filepath.Join(cfg.DataDir, "private", "api.sock")
	}
	if cfg.RotationInterval <= 0 {
		cfg.RotationInterval = 10 * time.Second
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if err := checkOIDC(&cfg); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}), caKick: make(chan struct{}, 1), renewals: make(chan scheduler.Item, 65536)}
	s.metrics.kex = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "signet_server_tls_handshakes_total",
		Help: "TLS handshakes on the agent listener, by negotiated key exchange group.",
	}, []string{"group"})
	s.metrics.renewalsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "signet_server_renewals_unscheduled_total",
		Help: "SVID renewals not scheduled because the queue was full (agents then renew at half-life).",
	})
	s.metrics.attestFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "signet_server_node_attestation_failures_total",
		Help: "Node attestations refused, by method (\"unknown\" for a type not served) and gRPC status code.",
	}, []string{"method", "code"})
	cfg.Registry.MustRegister(s.metrics.kex, s.metrics.renewalsDropped, s.metrics.attestFailures, newCAExpiry(s))
	rpc, err := telemetry.NewRPCMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.rpc = rpc
	return s, nil
}

// Ready is closed once the server serves both listeners.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// AgentAddr returns the agent listener's address once Ready.
func (s *Server) AgentAddr() *net.TCPAddr { return s.agentAddr.Load() }

// AdminSocket returns the admin socket path.
func (s *Server) AdminSocket() string { return s.cfg.AdminSocket }

// CA returns the server's CA manager (for tests and tools).
func (s *Server) CA() *ca.Manager { return s.ca }

// Run starts the server and blocks until ctx is done or a subsystem (a
// listener, a loop) fails.
//
// Start-up opens the shared resources in order (data dir lock, etcd, the
// store, the CA and issuer, the event log) and builds the subsystems; they
// then run as one group: the first failure stops them all, and Run waits
// for every one before it closes the resources in reverse order, so the
// listeners have stopped before etcd closes.
func (s *Server) Run(ctx context.Context) error {
	unlock, err := lockDataDir(s.cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	cli, closeEtcd, err := s.openEtcdCtx(ctx)
	if err != nil {
		return err
	}
	defer closeEtcd()
	s.etcd = cli
	if err := s.checkTrustDomain(ctx, cli); err != nil {
		return err
	}
	if err := keyspace.Migrate(ctx, cli, s.keys(), s.log); err != nil {
		return fmt.Errorf("server: %w", err)
	}

	closeOIDC, err := s.listenOIDC()
	if err != nil {
		return err
	}
	defer closeOIDC()

	st, err := store.New(cli, s.cfg.TrustDomain, store.WithLogger(s.log), store.WithClock(s.cfg.Clock))
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if err := st.Start(ctx); err != nil {
		return fmt.Errorf("server: start store: %w", err)
	}
	defer st.Close()
	s.store = st

	shared, vc, closeKM, err := s.openCA()
	if err != nil {
		return err
	}
	defer closeKM()
	s.hub = notify.New(hubState{s}, s.cfg.Registry)

	app, err := s.openEventLog()
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		if err := app.Close(cctx); err != nil {
			s.log.Error("rotation events not written at shutdown", "error", err)
		}
	}()

	subs, cleanup, err := s.subsystems(vc, app, shared)
	defer cleanup()
	if err != nil {
		return err
	}

	g, gctx := newGroup(ctx, s.log)
	for _, sub := range subs {
		g.start(gctx, sub)
	}
	s.scheduleCA(gctx)
	s.log.Info("server ready", "trust_domain", s.cfg.TrustDomain.Name(), "agent_address", s.AgentAddr().String(), "admin_socket", s.cfg.AdminSocket)
	close(s.ready)
	err = g.wait()
	s.log.Info("server stopped")
	return err
}

// keys is the trust domain's etcd key layout.
func (s *Server) keys() keyspace.Space { return keyspace.For(s.cfg.TrustDomain) }

// shutdownGrace bounds a graceful stop (listeners, final writes).
const shutdownGrace = 5 * time.Second

// openEventLog opens the rotation event log and its appender, and wires the SVID tracker behind forced
// rotation into s.events. The caller closes the appender.
func (s *Server) openEventLog() (*eventlog.Appender, error) {
	var err error
	s.evlog, err = eventlog.New(s.etcd, s.keys().Events(), eventlog.WithClock(s.cfg.Clock), eventlog.WithLogger(s.log))
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	app := eventlog.NewAppender(s.evlog, eventlog.WithRegisterer(s.cfg.Registry))
	tracker := store.NewSVIDTracker(s.store, func() []string {
		var ids []string
		for _, a := range s.ca.X509Authorities() {
			ids = append(ids, a.ID)
		}
		return ids
	})
	s.events = &events{s: s, app: app, tracker: tracker}
	return app, nil
}

// subsystems builds every subsystem of the server, the listeners last. On
// error the ones already built are released; cleanup (never nil) releases
// what outlives the group (the secrets broker) and runs after it stopped.
func (s *Server) subsystems(vc *secrets.Client, app *eventlog.Appender, shared *etcdCAState) (subs []subsystem, cleanup func(), err error) {
	cleanup = func() {}
	if s.cfg.Vault != nil {
		secretSubs, closeBroker, err := s.startSecrets(vc, app)
		if err != nil {
			return nil, cleanup, err
		}
		cleanup = closeBroker
		subs = append(subs, secretSubs...)
	}
	if s.oidcLis != nil {
		sub, err := s.startOIDC()
		if err != nil {
			return nil, cleanup, err
		}
		subs = append(subs, sub)
	}
	var beLis net.Listener
	fail := func(err error) ([]subsystem, func(), error) {
		if beLis != nil {
			beLis.Close()
		}
		return nil, cleanup, err
	}
	if err := s.newRefresher(); err != nil {
		return fail(err)
	}
	subs = append(subs, loop("federation refresher", s.refresher.Run))
	notifierSubs, err := s.startNotifiers()
	if err != nil {
		return fail(err)
	}
	subs = append(subs, notifierSubs...)
	if s.cfg.Federation.BundleEndpoint != nil {
		sub, lis, err := s.startBundleEndpoint()
		if err != nil {
			return fail(err)
		}
		beLis = lis
		subs = append(subs, sub)
	}
	checkpointer := eventlog.NewCheckpointer(s.evlog, eventlog.SVIDKey(serverSVIDSource{s}), eventlog.WithInterval(s.cfg.CheckpointInterval))
	stateSubs, err := s.stateLoops(checkpointer)
	if err != nil {
		return fail(err)
	}
	subs = append(subs, stateSubs...)
	subs = append(subs,
		unit{"svid tracker", s.events.tracker.Run},
		unit{"event log checkpointer", checkpointer.Run},
	)
	if shared != nil {
		subs = append(subs, loop("shared CA watch", func(ctx context.Context) { s.watchCA(ctx, *shared) }))
	}

	listeners, err := s.listeners()
	if err != nil {
		return fail(err)
	}
	// The scheduler's name carries the agent listener's address.
	if s.sched, err = s.newScheduler(); err != nil {
		for _, l := range listeners {
			l.lis.Close()
		}
		return fail(err)
	}
	subs = append(subs,
		loop("rotation scheduler", func(ctx context.Context) {
			if err := s.sched.Run(ctx); err != nil {
				s.log.Error("rotation scheduler stopped", "error", err)
			}
		}),
		loop("renewal writer", s.renewalWriter),
		loop("CA rotation", s.rotationLoop),
		loop("push", s.pushLoop),
	)
	for _, l := range listeners {
		subs = append(subs, l)
	}
	return subs, cleanup, nil
}

func (s *Server) register(g *grpc.Server) {
	agentv1.RegisterAgentServer(g, agentapi.New(agentapi.Config{
		TrustDomain: s.cfg.TrustDomain, Store: s.store, Issuer: s.issuer,
		AgentTTL: s.cfg.AgentSVIDTTL, Events: s.events, SVIDs: agentSVIDs{s}, Now: s.cfg.Clock.Now, Logger: s.log,
		NodeAttestors: s.nodeAttestors(),
		AttestationFailed: func(method string, code codes.Code) {
			s.metrics.attestFailures.WithLabelValues(method, code.String()).Inc()
		},
	}))
	entryv1.RegisterEntryServer(g, entryapi.New(entryapi.Config{
		TrustDomain: s.cfg.TrustDomain, Store: s.store, Logger: s.log, MaxTTL: s.cfg.CATTL,
	}))
	svidv1.RegisterSVIDServer(g, svidapi.New(svidapi.Config{
		TrustDomain: s.cfg.TrustDomain, Store: s.store, Issuer: s.issuer, Events: s.events, DownstreamCA: s.ca, Clock: s.cfg.Clock, Logger: s.log,
	}))
	la := localauthority.New(localauthority.Config{
		CA: s.ca, Notifier: caNotifier{s}, Counter: s.events.tracker, Events: s.events, Now: s.cfg.Clock.Now, Logger: s.log,
	})
	localauthorityv1.RegisterLocalAuthorityServer(g, la)
	cav1.RegisterCAServer(g, la.CAService())
	auditv1.RegisterAuditServer(g, auditapi.New(auditapi.Config{Log: s.evlog, Logger: s.log, Signer: eventlog.SVIDKey(serverSVIDSource{s})}))
	bundlev1.RegisterBundleServer(g, bundleapi.New(bundleapi.Config{
		TrustDomain: s.cfg.TrustDomain, Source: s.ca, Store: s.store, Publisher: s.ca, Logger: s.log,
	}))
	trustdomainv1.RegisterTrustDomainServer(g, trustdomainapi.New(trustdomainapi.Config{
		TrustDomain: s.cfg.TrustDomain, Store: s.store, Refresher: s.refresher, Logger: s.log,
	}))
	notifyv1.RegisterNotifierServer(g, s.hub)
	if s.secrets != nil {
		s.secrets.Register(g)
	}
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
}

func (s *Server) observeKEX(id tls.CurveID) {
	s.metrics.kex.WithLabelValues(id.String()).Inc()
	s.log.Debug("agent TLS handshake", "kex_group", id.String())
}

func (s *Server) openEtcd(ctx context.Context) (*clientv3.Client, func(), error) {
	if len(s.cfg.Etcd.Endpoints) == 0 {
		e, err := etcdserver.Start(ctx, etcdserver.Config{
			Name:   embeddedMember,
			Dir:    EtcdDir(s.cfg.DataDir),
			Logger: s.log,

			QuotaBackendBytes:   s.cfg.State.QuotaBackendBytes,
			CompactionRetention: s.cfg.State.CompactionRetention,
			CompactionRevisions: s.cfg.State.CompactionRevisions,
			SnapshotCount:       s.cfg.State.SnapshotCount,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("server: start embedded etcd: %w", err)
		}
		return e.Client(), func() { _ = e.Close() }, nil
	}
	if err := s.checkExternalEtcd(); err != nil {
		return nil, nil, err
	}
	cfg := clientv3.Config{Endpoints: s.cfg.Etcd.Endpoints, DialTimeout: 5 * time.Second, Context: ctx}
	if s.cfg.Etcd.CertFile != "" || s.cfg.Etcd.CAFile != "" {
		tc, err := etcdTLS(s.cfg.Etcd)
		if err != nil {
			return nil, nil, err
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("server: connect to etcd %v: %w", s.cfg.Etcd.Endpoints, err)
	}
	return cli, func() { _ = cli.Close() }, nil
}

// nodeAttestors returns join tokens and the configured methods; nil (the
// Agent API's default: join tokens alone) when none are configured.
func (s *Server) nodeAttestors() []agentapi.NodeAttestor {
	if len(s.cfg.NodeAttestors) == 0 {
		return nil
	}
	for _, a := range s.cfg.NodeAttestors {
		if a.Type() == jointoken.Type {
			return s.cfg.NodeAttestors
		}
	}
	jt, err := jointoken.NewAttestor(jointoken.Config{
		TrustDomain: s.cfg.TrustDomain, Tokens: s.store,
		NotFound: store.ErrNotFound, Expired: store.ErrExpired, Now: s.cfg.Clock.Now,
	})
	if err != nil {
		s.log.Warn("server: join token attestation unavailable", "error", err)
		return s.cfg.NodeAttestors
	}
	return append([]agentapi.NodeAttestor{jt}, s.cfg.NodeAttestors...)
}
