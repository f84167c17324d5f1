// Package etcdserver runs an embedded etcd member (on a private Unix
// socket, or a small loopback TLS cluster of them) for the Signet
// server's state, and hands out clients connected to it.
package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// Defaults for the bounded-state settings.
const (
	// DefaultCompactionRetention is the MVCC history kept by the
	// embedded member's periodic auto-compaction: watchers that fall
	// further behind get ErrCompacted and relist.
	DefaultCompactionRetention = 5 * time.Minute
	// DefaultQuotaBackendBytes is etcd's default backend quota (2 GiB).
	DefaultQuotaBackendBytes = 2 << 30
	// DefaultSnapshotCount is etcd's: raft snapshots every 10,000
	// committed transactions (what lets the WAL be released).
	DefaultSnapshotCount = 10000
	// singleCatchUpEntries are the raft entries a single member keeps in
	// memory after each in-memory snapshot (etcd's 5,000 are for slow
	// followers; a single member has none). Measured in docs/scaling.md.
	singleCatchUpEntries = 500
	// ClientSocketName is the single member's client socket, inside Dir.
	ClientSocketName = "client.sock"
	// maxSocketPath is the longest Unix socket path Linux accepts.
	maxSocketPath = 107
)

// Config configures one embedded etcd member.
//
// A single member (InitialCluster empty) serves its clients on a Unix
// socket, Dir/client.sock, mode 0600 in the 0700 Dir, and opens no peer
// listener and no TCP port at all: only processes of the owner's uid (in
// practice, the server) can reach it.
//
// A member of a multi-member cluster (StartCluster, for HA tests) serves
// clients and peers on loopback TCP with TLS and requires client
// certificates signed by the cluster CA in TLS, whose keys live in the
// 0700 data directories.
type Config struct {
	// Name is the member name; "signet" if empty.
	Name string
	// Dir is the data directory (required). It is created 0700, or set to
	// 0700 if it exists; it must be a directory owned by this process's
	// uid.
	Dir string
	// ClientURL and PeerURL are https URLs on a loopback address, for a
	// cluster member only (with TLS set); empty picks a free 127.0.0.1
	// port. Plaintext and non-loopback URLs are refused.
	ClientURL string
	PeerURL   string
	// InitialCluster is the etcd initial-cluster string
	// ("name1=https://127.0.0.1:2380,..."); empty means a single member.
	InitialCluster string
	// ClusterToken is the initial cluster token; "signet" if empty.
	ClusterToken string
	// TLS holds the member's certificates; required with InitialCluster.
	TLS *MemberTLS
	// QuotaBackendBytes is the backend quota; 0 means
	// DefaultQuotaBackendBytes. Writes fail with NOSPACE beyond it.
	QuotaBackendBytes int64
	// CompactionRetention is the history periodic auto-compaction keeps;
	// 0 means DefaultCompactionRetention, negative disables it. Ignored
	// when CompactionRevisions is set.
	CompactionRetention time.Duration
	// CompactionRevisions, when positive, switches auto-compaction to
	// etcd's revision mode: keep the last CompactionRevisions revisions
	// (compacted every 5 minutes).
	CompactionRevisions int64
	// SnapshotCount is the committed transactions between two raft
	// snapshots; the member keeps at most about this many raft entries
	// in memory. 0 means DefaultSnapshotCount.
	SnapshotCount uint64
	// Logger receives etcd's error-level logs; nil discards them.
	Logger *slog.Logger
}

// Server is a running embedded etcd member.
type Server struct {
	etcd      *embed.Etcd
	client    *clientv3.Client
	endpoints []string
	name      string
	tls       *MemberTLS
	quota     int64

	closeOnce sync.Once
	closeErr  error
}

// Start starts an embedded etcd member and waits until it is ready to
// serve (for a member of a multi-member cluster: until the cluster has a
// quorum), or until ctx is done.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("etcdserver: data directory is required")
	}
	if cfg.Name == "" {
		cfg.Name = "signet"
	}
	if cfg.ClusterToken == "" {
		cfg.ClusterToken = "signet"
	}
	if cfg.QuotaBackendBytes == 0 {
		cfg.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	if cfg.QuotaBackendBytes < 0 {
		return nil, fmt.Errorf("etcdserver: backend quota %d bytes is negative", cfg.QuotaBackendBytes)
	}
	if cfg.CompactionRetention == 0 {
		cfg.CompactionRetention = DefaultCompactionRetention
	}
	dir, err := privateDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir

	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.Dir
	ec.InitialClusterToken = cfg.ClusterToken
	ec.ClusterState = embed.ClusterStateFlagNew
	ec.QuotaBackendBytes = cfg.QuotaBackendBytes
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "0"
	if cfg.CompactionRetention > 0 {
		ec.AutoCompactionRetention = cfg.CompactionRetention.String()
	}
	if cfg.CompactionRevisions > 0 {
		ec.AutoCompactionMode = embed.CompactorModeRevision
		ec.AutoCompactionRetention = strconv.FormatInt(cfg.CompactionRevisions, 10)
	}
	if cfg.SnapshotCount == 0 {
		cfg.SnapshotCount = DefaultSnapshotCount
	}
	ec.SnapshotCount = cfg.SnapshotCount
	// Entries kept after a snapshot for a slow follower to catch up
	// from; a single member has no follower.
	if cfg.InitialCluster == "" {
		ec.SnapshotCatchUpEntries = singleCatchUpEntries
	}
	// No listener besides the ones configured below: no metrics URL, no
	// pprof, no separate HTTP URL, no gRPC gateway.
	ec.ListenMetricsUrls = nil
	ec.ListenClientHttpUrls = nil
	ec.EnablePprof = false
	ec.EnableGRPCGateway = false
	ec.LogLevel = "error"
	zl := newZapLogger(cfg.Logger)
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zl)

	var clientCfg clientv3.Config
	var sock string
	if cfg.InitialCluster == "" {
		if cfg.ClientURL != "" || cfg.PeerURL != "" || cfg.TLS != nil {
			return nil, errors.New("etcdserver: a single member listens on its Unix socket only: client/peer URLs and TLS are for cluster members (set InitialCluster)")
		}
		sock = filepath.Join(cfg.Dir, ClientSocketName)
		if len(sock) > maxSocketPath {
			return nil, fmt.Errorf("etcdserver: client socket path %s is %d bytes, over the %d-byte limit of Unix socket paths: use a shorter data directory", sock, len(sock), maxSocketPath)
		}
		cu := url.URL{Scheme: "unix", Path: sock}
		// Advertised URLs are required by etcd but never dialled by a
		// single member; port 0 makes sure nothing answers there.
		placeholder := url.URL{Scheme: "http", Host: "localhost:0"}
		ec.ListenClientUrls = []url.URL{cu}
		ec.AdvertiseClientUrls = []url.URL{placeholder}
		ec.ListenPeerUrls = nil
		ec.AdvertisePeerUrls = []url.URL{placeholder}
		ec.InitialCluster = cfg.Name + "=" + placeholder.String()
		clientCfg.Endpoints = []string{cu.String()}
	} else {
		if cfg.TLS == nil {
			return nil, errors.New("etcdserver: a cluster member needs TLS certificates (see NewClusterTLS)")
		}
		if cfg.ClientURL == "" || cfg.PeerURL == "" {
			ports, err := freePorts(2)
			if err != nil {
				return nil, err
			}
			if cfg.ClientURL == "" {
				cfg.ClientURL = loopbackURL(ports[0])
			}
			if cfg.PeerURL == "" {
				cfg.PeerURL = loopbackURL(ports[1])
			}
		}
		clientURL, err := parseLoopbackURL("client", cfg.ClientURL)
		if err != nil {
			return nil, err
		}
		peerURL, err := parseLoopbackURL("peer", cfg.PeerURL)
		if err != nil {
			return nil, err
		}
		ec.ListenClientUrls = []url.URL{*clientURL}
		ec.AdvertiseClientUrls = []url.URL{*clientURL}
		ec.ListenPeerUrls = []url.URL{*peerURL}
		ec.AdvertisePeerUrls = []url.URL{*peerURL}
		ec.InitialCluster = cfg.InitialCluster
		cfg.TLS.apply(ec)
		tc, err := cfg.TLS.ClientConfig()
		if err != nil {
			return nil, err
		}
		clientCfg.Endpoints = []string{clientURL.String()}
		clientCfg.TLS = tc
	}

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: start %s: %w", cfg.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcdserver: %s failed while starting: %w", cfg.Name, err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("etcdserver: %s not ready: %w", cfg.Name, ctx.Err())
	}
	if sock != "" {
		// The 0700 directory already keeps other uids out; the socket
		// mode is a second lock.
		if err := os.Chmod(sock, 0o600); err != nil {
			e.Close()
			return nil, fmt.Errorf("etcdserver: restrict client socket: %w", err)
		}
	}

	clientCfg.DialTimeout = 5 * time.Second
	clientCfg.Logger = zl
	cli, err := clientv3.New(clientCfg)
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("etcdserver: client for %s: %w", cfg.Name, err)
	}
	return &Server{etcd: e, client: cli, endpoints: clientCfg.Endpoints, name: cfg.Name, tls: cfg.TLS, quota: cfg.QuotaBackendBytes}, nil
}

// privateDir creates dir 0700 (or sets an existing one to 0700) and
// returns its absolute path. It refuses a symlink, a non-directory and a
// directory another uid owns.
func privateDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("etcdserver: data directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", fmt.Errorf("etcdserver: create data directory: %w", err)
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return "", fmt.Errorf("etcdserver: data directory: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("etcdserver: data directory %s is not a directory (a symlink?): remove it or choose another data directory", abs)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return "", fmt.Errorf("etcdserver: data directory %s is owned by uid %d, not %d: remove it or choose another data directory", abs, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(abs, 0o700); err != nil {
			return "", fmt.Errorf("etcdserver: restrict data directory: %w", err)
		}
	}
	return abs, nil
}

// Client returns a client connected to this member. It is closed by Close.
func (s *Server) Client() *clientv3.Client { return s.client }

// Endpoints returns the member's client URLs.
func (s *Server) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// Name returns the member name.
func (s *Server) Name() string { return s.name }

// ClientConfig returns a client configuration for this member (its
// endpoints and, for a cluster member, a TLS configuration with the
// cluster's client certificate), for callers that need their own client.
func (s *Server) ClientConfig() clientv3.Config {
	c := clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second}
	if s.tls != nil {
		c.TLS, _ = s.tls.ClientConfig() // loaded once already by Start
	}
	return c
}

// TLS returns the member's certificate files (nil for a single member).
func (s *Server) TLS() *MemberTLS { return s.tls }

// QuotaBackendBytes returns the member's backend quota.
func (s *Server) QuotaBackendBytes() int64 { return s.quota }

// Close closes the client and stops the member. It is safe to call more
// than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.client.Close()
		if errors.Is(s.closeErr, context.Canceled) {
			s.closeErr = nil
		}
		s.etcd.Close()
	})
	return s.closeErr
}

// StartCluster starts an n-member etcd cluster on loopback ports, with
// member data directories under dir, and waits until every member is
// ready. Clients and peers must present a certificate of the cluster CA,
// generated into dir/tls (see MemberTLS). On error, members already
// started are stopped.
func StartCluster(ctx context.Context, dir string, n int) ([]*Server, error) {
	if n < 1 {
		return nil, fmt.Errorf("etcdserver: cluster size %d < 1", n)
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	if _, err := privateDir(dir); err != nil {
		return nil, err
	}
	certs, err := NewClusterTLS(filepath.Join(dir, "tls"))
	if err != nil {
		return nil, err
	}
	cfgs := make([]Config, n)
	members := make([]string, n)
	for i := range n {
		cfgs[i] = Config{
			Name:         "signet-" + strconv.Itoa(i),
			Dir:          filepath.Join(dir, "member-"+strconv.Itoa(i)),
			ClientURL:    loopbackURL(ports[2*i]),
			PeerURL:      loopbackURL(ports[2*i+1]),
			ClusterToken: "signet-cluster",
			TLS:          certs,
		}
		members[i] = cfgs[i].Name + "=" + cfgs[i].PeerURL
	}
	initial := strings.Join(members, ",")

	servers := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfgs[i].InitialCluster = initial
		wg.Go(func() {
			servers[i], errs[i] = Start(ctx, cfgs[i])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range servers {
			if s != nil {
				_ = s.Close()
			}
		}
		return nil, err
	}
	return servers, nil
}

func loopbackURL(port int) string {
	return "https://127.0.0.1:" + strconv.Itoa(port)
}

func parseLoopbackURL(kind, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: invalid %s URL: %w", kind, err)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("etcdserver: %s URL %q: scheme must be https (cluster members require client certificates)", kind, raw)
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("etcdserver: %s URL %q: host must be a loopback address", kind, raw)
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("etcdserver: %s URL %q: port is required", kind, raw)
	}
	return u, nil
}

// freePorts reserves n distinct free TCP ports on 127.0.0.1 and releases
// them for the caller to bind.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("etcdserver: pick free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
