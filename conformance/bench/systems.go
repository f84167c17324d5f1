package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"text/template"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// The benchmark's trust domain and TTLs, the same for both systems (and
// the defaults of both).
const (
	trustDomainName = "example.org"
	caTTL           = "24h"
	x509SVIDTTL     = "1h"
	jwtSVIDTTL      = "5m"
	agentTTL        = "1h"
)

var trustDomain = spiffeid.RequireTrustDomainFromString(trustDomainName)

// system describes how to run one implementation's server and agent as
// separate processes.
type system struct {
	name string
	// serverArgs writes the server's configuration into dir and returns
	// its command line.
	serverArgs func(dir string, port int, adminSocket string) (bin string, args []string, err error)
	// agentArgs writes the agent's configuration into dir and returns its
	// command line.
	agentArgs func(dir, serverAddr, token, bundlePath, socket string) (bin string, args []string, err error)
}

func signetSystem(bin string) *system {
	return &system{
		name: "Signet",
		serverArgs: func(dir string, port int, adminSocket string) (string, []string, error) {
			cfg := filepath.Join(dir, "server.hcl")
			err := render(cfg, signetServerConf, map[string]any{
				"TrustDomain": trustDomainName, "Port": port, "DataDir": filepath.Join(dir, "data"),
				"Socket": adminSocket, "CATTL": caTTL, "X509TTL": x509SVIDTTL, "JWTTTL": jwtSVIDTTL, "AgentTTL": agentTTL,
			})
			return bin, []string{"server", "run", "--config", cfg}, err
		},
		agentArgs: func(dir, serverAddr, token, bundlePath, socket string) (string, []string, error) {
			return bin, []string{"agent", "run", "--trust-domain", trustDomainName, "--server-address", serverAddr,
				"--join-token", token, "--trust-bundle", bundlePath, "--data-dir", filepath.Join(dir, "data"),
				"--socket-path", socket, "--log-level", "warn",
				// All the harness's Workload API clients are one uid; SPIRE's
				// agent has no per-uid limits, so Signet's are lifted too.
				"--workload-max-conns-per-uid", "-1", "--workload-max-calls-per-uid", "-1"}, nil
		},
	}
}

func spireSystem(serverBin, agentBin string) *system {
	return &system{
		name: "SPIRE",
		serverArgs: func(dir string, port int, adminSocket string) (string, []string, error) {
			cfg := filepath.Join(dir, "server.conf")
			err := render(cfg, spireServerConf, map[string]any{
				"TrustDomain": trustDomainName, "Port": port, "DataDir": filepath.Join(dir, "data"),
				"Socket": adminSocket, "CATTL": caTTL, "X509TTL": x509SVIDTTL, "JWTTTL": jwtSVIDTTL, "AgentTTL": agentTTL,
			})
			return serverBin, []string{"run", "-config", cfg}, err
		},
		agentArgs: func(dir, serverAddr, token, bundlePath, socket string) (string, []string, error) {
			host, port, err := net.SplitHostPort(serverAddr)
			if err != nil {
				return "", nil, fmt.Errorf("bench: server address %q: %w", serverAddr, err)
			}
			cfg := filepath.Join(dir, "agent.conf")
			err = render(cfg, spireAgentConf, map[string]any{
				"TrustDomain": trustDomainName, "Host": host, "Port": port, "DataDir": filepath.Join(dir, "data"),
				"Socket": socket, "Bundle": bundlePath, "Token": token,
			})
			return agentBin, []string{"run", "-config", cfg}, err
		},
	}
}

// Signet's server: embedded etcd (the default), admin socket, SPIRE's
// default TTLs spelled out. Its per-agent signing rate limit is off, as
// SPIRE's is below: the harness measures issuance, not the limiter.
const signetServerConf = `limits {
  sign_rate = -1
}

server {
  trust_domain          = "{{.TrustDomain}}"
  bind_address          = "127.0.0.1"
  bind_port             = {{.Port}}
  data_dir              = "{{.DataDir}}"
  socket_path           = "{{.Socket}}"
  ca_ttl                = "{{.CATTL}}"
  default_x509_svid_ttl = "{{.X509TTL}}"
  default_jwt_svid_ttl  = "{{.JWTTTL}}"
  agent_ttl             = "{{.AgentTTL}}"
  log_level             = "warn"
}
`

// SPIRE's server: the default sqlite datastore, ECDSA P-256 CA, disk key
// manager (Signet keeps its CA keys on disk too), join_token attestation.
// The per-IP signing rate limit is off, as Signet's per-agent one is: the
// harness and the agents all come from 127.0.0.1.
const spireServerConf = `server {
  bind_address          = "127.0.0.1"
  bind_port             = "{{.Port}}"
  socket_path           = "{{.Socket}}"
  trust_domain          = "{{.TrustDomain}}"
  data_dir              = "{{.DataDir}}"
  log_level             = "WARN"
  ca_key_type           = "ec-p256"
  ca_ttl                = "{{.CATTL}}"
  default_x509_svid_ttl = "{{.X509TTL}}"
  default_jwt_svid_ttl  = "{{.JWTTTL}}"
  agent_ttl             = "{{.AgentTTL}}"
  ratelimit {
    signing = false
  }
}

plugins {
  DataStore "sql" {
    plugin_data {
      database_type     = "sqlite3"
      connection_string = "{{.DataDir}}/datastore.sqlite3"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {
      keys_path = "{{.DataDir}}/keys.json"
    }
  }
}
`

const spireAgentConf = `agent {
  data_dir          = "{{.DataDir}}"
  log_level         = "WARN"
  server_address    = "{{.Host}}"
  server_port       = "{{.Port}}"
  socket_path       = "{{.Socket}}"
  trust_bundle_path = "{{.Bundle}}"
  trust_domain      = "{{.TrustDomain}}"
  join_token        = "{{.Token}}"
}

plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {
      directory = "{{.DataDir}}"
    }
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`

func render(path, tmpl string, data any) error {
	t, err := template.New(filepath.Base(path)).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return fmt.Errorf("bench: parse config template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return fmt.Errorf("bench: render %s: %w", path, err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return nil
}

// server is a running server process with an admin API connection over its
// Unix socket.
type server struct {
	sys   *system
	p     *proc
	dir   string
	addr  string // agent listener, 127.0.0.1:port
	admin *grpc.ClientConn
}

// startServer starts sys's server in dir (a short path) and waits until its
// admin API answers and its agent port accepts connections.
func startServer(ctx context.Context, sys *system, dir string) (*server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	socket := filepath.Join(dir, "admin.sock")
	var lastErr error
	// The port is picked before the server binds it; retry if another
	// process took it meanwhile.
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		bin, args, err := sys.serverArgs(dir, port, socket)
		if err != nil {
			return nil, err
		}
		p, err := startProc(sys.name+" server", filepath.Join(dir, "server.log"), bin, args...)
		if err != nil {
			return nil, err
		}
		s := &server{sys: sys, p: p, dir: dir, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		if err := s.waitReady(ctx); err != nil {
			p.stop()
			lastErr = fmt.Errorf("%w\n--- %s log (tail) ---\n%s", err, p.name, p.logTail(3000))
			continue
		}
		return s, nil
	}
	return nil, lastErr
}

func (s *server) waitReady(ctx context.Context) error {
	conn, err := grpc.NewClient("unix://"+filepath.Join(s.dir, "admin.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("bench: admin client: %w", err)
	}
	err = poll(ctx, 90*time.Second, 100*time.Millisecond, s.sys.name+" server to start", func() (bool, error) {
		if s.p.exited() {
			return false, fmt.Errorf("%s server exited: %v", s.sys.name, s.p.err) //nolint:errorlint // nil after a clean exit
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := bundlev1.NewBundleClient(conn).GetBundle(cctx, &bundlev1.GetBundleRequest{}); err != nil {
			return false, err
		}
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err != nil {
			return false, err
		}
		c.Close()
		return true, nil
	})
	if err != nil || s.p.exited() {
		conn.Close()
		if err == nil {
			err = fmt.Errorf("bench: %s server exited", s.sys.name)
		}
		return err
	}
	s.admin = conn
	return nil
}

func (s *server) stop() {
	if s == nil {
		return
	}
	if s.admin != nil {
		s.admin.Close()
	}
	s.p.stop()
}

// token creates a join token.
func (s *server) token(ctx context.Context) (string, error) {
	t, err := agentv1.NewAgentClient(s.admin).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 3600})
	if err != nil {
		return "", fmt.Errorf("bench: %s CreateJoinToken: %w", s.sys.name, err)
	}
	return t.Value, nil
}

// agentID is the SPIFFE ID an agent attested with token gets (the same in
// both systems).
func agentID(token string) spiffeid.ID {
	return spiffeid.RequireFromSegments(trustDomain, "spire", "agent", "join_token", token)
}

func protoID(id spiffeid.ID) *types.SPIFFEID {
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
}

// bundle returns the server's X.509 authorities from the Bundle API.
func (s *server) bundle(ctx context.Context) ([]*x509.Certificate, error) {
	b, err := bundlev1.NewBundleClient(s.admin).GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		return nil, fmt.Errorf("bench: %s GetBundle: %w", s.sys.name, err)
	}
	var out []*x509.Certificate
	for _, a := range b.X509Authorities {
		c, err := x509.ParseCertificate(a.Asn1)
		if err != nil {
			return nil, fmt.Errorf("bench: %s bundle: %w", s.sys.name, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("bench: %s bundle has no X.509 authorities", s.sys.name)
	}
	return out, nil
}

// createEntries registers entries in batches of batch, with up to conc
// batches in flight.
func (s *server) createEntries(ctx context.Context, entries []*types.Entry, batch, conc int) ([]*types.Entry, error) {
	out := make([]*types.Entry, len(entries))
	client := entryv1.NewEntryClient(s.admin)
	type job struct{ lo, hi int }
	jobs := make(chan job)
	errc := make(chan error, conc)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := 0; w < conc; w++ {
		go func() {
			for j := range jobs {
				resp, err := client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: entries[j.lo:j.hi]})
				if err != nil {
					errc <- fmt.Errorf("bench: %s BatchCreateEntry: %w", s.sys.name, err)
					cancel()
					for range jobs {
					}
					return
				}
				for i, r := range resp.Results {
					if c := codes.Code(r.GetStatus().GetCode()); c != codes.OK {
						errc <- fmt.Errorf("bench: %s BatchCreateEntry: entry %d: %v %s", s.sys.name, j.lo+i, c, r.GetStatus().GetMessage())
						cancel()
						for range jobs {
						}
						return
					}
					out[j.lo+i] = r.Entry
				}
			}
			errc <- nil
		}()
	}
send:
	for lo := 0; lo < len(entries); lo += batch {
		select {
		case jobs <- job{lo, min(lo+batch, len(entries))}:
		case <-ctx.Done():
			break send
		}
	}
	close(jobs)
	var errs []error
	for w := 0; w < conc; w++ {
		errs = append(errs, <-errc)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, ctx.Err()
}

// writeBundlePEM writes the server's X.509 authorities to path.
func (s *server) writeBundlePEM(ctx context.Context, path string) error {
	certs, err := s.bundle(ctx)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

// agent is a running agent process.
type agent struct {
	p      *proc
	socket string
	id     spiffeid.ID
}

// startAgent starts an agent attesting to s with token, in dir (a short
// path). It returns once the Workload API socket exists; workloads may
// still have to wait for their SVIDs.
func startAgent(ctx context.Context, s *server, dir, token string) (*agent, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	bundlePath := filepath.Join(dir, "bundle.pem")
	if err := s.writeBundlePEM(ctx, bundlePath); err != nil {
		return nil, err
	}
	socket := filepath.Join(dir, "wl.sock")
	bin, args, err := s.sys.agentArgs(dir, s.addr, token, bundlePath, socket)
	if err != nil {
		return nil, err
	}
	p, err := startProc(s.sys.name+" agent", filepath.Join(dir, "agent.log"), bin, args...)
	if err != nil {
		return nil, err
	}
	a := &agent{p: p, socket: socket, id: agentID(token)}
	err = poll(ctx, 90*time.Second, 20*time.Millisecond, s.sys.name+" agent socket", func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("%s agent exited: %v", s.sys.name, p.err) //nolint:errorlint // nil after a clean exit
		}
		_, err := os.Stat(socket)
		return err == nil, err
	})
	if err != nil || p.exited() {
		p.stop()
		if err == nil {
			err = fmt.Errorf("bench: %s agent exited", s.sys.name)
		}
		return nil, fmt.Errorf("%w\n--- %s log (tail) ---\n%s", err, p.name, p.logTail(3000))
	}
	return a, nil
}

func (a *agent) stop() {
	if a != nil {
		a.p.stop()
	}
}
