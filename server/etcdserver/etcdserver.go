// Package etcdserver runs an embedded etcd member (or a small loopback
// cluster of them) for the Signet server's state, and hands out clients
// connected to it.
package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// Config configures one embedded etcd member.
type Config struct {
	// Name is the member name; "signet" if empty.
	Name string
	// Dir is the data directory (required).
	Dir string
	// ClientURL and PeerURL are http URLs on a loopback address; empty
	// picks a free 127.0.0.1 port. The embedded member speaks plaintext,
	// so non-loopback addresses are refused.
	ClientURL string
	PeerURL   string
	// InitialCluster is the etcd initial-cluster string
	// ("name1=http://127.0.0.1:2380,..."); empty means a single member.
	InitialCluster string
	// ClusterToken is the initial cluster token; "signet" if empty.
	ClusterToken string
	// Logger receives etcd's error-level logs; nil discards them.
	Logger *slog.Logger
}

// Server is a running embedded etcd member.
type Server struct {
	etcd      *embed.Etcd
	client    *clientv3.Client
	endpoints []string
	name      string

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

	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{*clientURL}
	ec.AdvertiseClientUrls = []url.URL{*clientURL}
	ec.ListenPeerUrls = []url.URL{*peerURL}
	ec.AdvertisePeerUrls = []url.URL{*peerURL}
	ec.InitialClusterToken = cfg.ClusterToken
	ec.ClusterState = embed.ClusterStateFlagNew
	if cfg.InitialCluster != "" {
		ec.InitialCluster = cfg.InitialCluster
	} else {
		ec.InitialCluster = cfg.Name + "=" + peerURL.String()
	}
	ec.LogLevel = "error"
	zl := newZapLogger(cfg.Logger)
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zl)

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

	endpoints := []string{clientURL.String()}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zl,
	})
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("etcdserver: client for %s: %w", cfg.Name, err)
	}
	return &Server{etcd: e, client: cli, endpoints: endpoints, name: cfg.Name}, nil
}

// Client returns a client connected to this member. It is closed by Close.
func (s *Server) Client() *clientv3.Client { return s.client }

// Endpoints returns the member's client URLs.
func (s *Server) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// Name returns the member name.
func (s *Server) Name() string { return s.name }

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
// ready. On error, members already started are stopped.
func StartCluster(ctx context.Context, dir string, n int) ([]*Server, error) {
	if n < 1 {
		return nil, fmt.Errorf("etcdserver: cluster size %d < 1", n)
	}
	ports, err := freePorts(2 * n)
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
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

func parseLoopbackURL(kind, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: invalid %s URL: %w", kind, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("etcdserver: %s URL %q: scheme must be http", kind, raw)
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
