// Package secrets is the agent's side of signet.secrets.v1: the
// WorkloadSecrets service on the Workload API socket, which attests the
// calling workload the same way the Workload API does and forwards its
// request to the server with the matched SPIFFE ID, and file sinks that
// keep a secret written to a file (mode 0400, atomically replaced).
//
// The server connection comes and goes with the agent's sessions; a
// forwarded watch reconnects with backoff, and the workload keeps the last
// value meanwhile. Secret values are never logged.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/agent/peercred"
	secretsv1 "github.com/signet-id/signet/proto/signet/secrets/v1"
)

// Attestor turns a caller's PID into selectors (the Workload API's).
type Attestor interface {
	Attest(ctx context.Context, pid int32) ([]*types.Selector, error)
}

// Cache finds the entries a workload's selectors match.
type Cache interface {
	MatchingEntries(selectors []*types.Selector) []*types.Entry
}

var _ Cache = (*cache.Cache)(nil)

// ServerClient returns the Secrets client of the agent's current server
// session, or an error while the agent is not connected.
type ServerClient func(ctx context.Context) (secretsv1.SecretsClient, error)

// ErrNotConnected is what a ServerClient returns between sessions.
var ErrNotConnected = errors.New("agent secrets: not connected to a server")

// Config configures a Service.
type Config struct {
	Attestor Attestor
	Cache    Cache
	Server   ServerClient
	// MaxBackoff caps the reconnection interval (default 30s).
	MaxBackoff time.Duration
	Logger     *slog.Logger
}

// Service implements secretsv1.WorkloadSecretsServer.
type Service struct {
	secretsv1.UnimplementedWorkloadSecretsServer
	cfg Config
	log *slog.Logger
}

var _ secretsv1.WorkloadSecretsServer = (*Service)(nil)

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Server == nil {
		return nil, errors.New("agent secrets: server client is required")
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: cfg.Logger}, nil
}

// Register registers the WorkloadSecrets service on g (the Workload API
// server from workloadapi.Server.NewGRPCServer, whose interceptors require
// the security header).
func (s *Service) Register(g grpc.ServiceRegistrar) {
	secretsv1.RegisterWorkloadSecretsServer(g, s)
}

// attest identifies the caller and returns its entries in entry ID order.
func (s *Service) attest(ctx context.Context) ([]*types.Entry, error) {
	if s.cfg.Attestor == nil || s.cfg.Cache == nil {
		return nil, status.Error(codes.Unimplemented, "workload attestation is not configured")
	}
	ai, sels, err := peercred.Attest(ctx, s.cfg.Attestor.Attest)
	if err != nil {
		s.log.WarnContext(ctx, "agent secrets: workload attestation failed", "pid", ai.PID, "uid", ai.UID, "error", err)
		return nil, err
	}
	entries := slices.Clone(s.cfg.Cache.MatchingEntries(sels))
	slices.SortFunc(entries, func(a, b *types.Entry) int { return strings.Compare(a.Id, b.Id) })
	return entries, nil
}

// Watch implements secretsv1.WorkloadSecretsServer.
func (s *Service) Watch(req *secretsv1.WorkloadWatchSecretRequest, stream grpc.ServerStreamingServer[secretsv1.Secret]) error {
	ctx := stream.Context()
	if req.Name == "" {
		return status.Error(codes.InvalidArgument, "name is required")
	}
	var want spiffeid.ID
	if req.SpiffeId != "" {
		var err error
		if want, err = spiffeid.FromString(req.SpiffeId); err != nil {
			return status.Errorf(codes.InvalidArgument, "invalid spiffe_id: %v", err)
		}
	}
	entries, err := s.attest(ctx)
	if err != nil {
		return err
	}
	var chosen *types.Entry
	var id spiffeid.ID
	for _, e := range entries {
		eid, err := cache.EntrySPIFFEID(e)
		if err != nil {
			continue
		}
		if want.IsZero() || eid == want {
			chosen, id = e, eid
			break
		}
	}
	if chosen == nil {
		return status.Error(codes.PermissionDenied, "no identity issued")
	}
	return s.Forward(ctx, req.Name, id, chosen.Id, func(m *secretsv1.Secret) error {
		// Stop delivering to a caller that changed since it was attested.
		if err := peercred.Reverify(ctx); err != nil {
			return err
		}
		return stream.Send(m)
	})
}

// terminal reports whether a server answer ends a forwarded watch rather
// than being retried.
func terminal(code codes.Code) bool {
	switch code {
	case codes.PermissionDenied, codes.InvalidArgument, codes.NotFound, codes.Unimplemented, codes.Unauthenticated:
		return true
	}
	return false
}

// Forward watches secret name for id (entry entryID, optional) through the
// server and calls send with every new state until ctx is done (nil) or
// the server refuses (its status error). Transient failures (no session,
// Vault or server unavailable, a session ending) are retried with backoff
// while the receiver keeps the last value.
func (s *Service) Forward(ctx context.Context, name string, id spiffeid.ID, entryID string, send func(*secretsv1.Secret) error) error {
	var last *secretsv1.Secret
	backoff := time.Duration(0)
	for {
		err := s.forwardOnce(ctx, name, id, entryID, func(m *secretsv1.Secret) error {
			backoff = 0
			if proto.Equal(m, last) {
				return nil
			}
			if err := send(m); err != nil {
				return &sendError{err}
			}
			last = m
			return nil
		})
		if ctx.Err() != nil {
			return nil
		}
		var se *sendError
		if errors.As(err, &se) {
			return se.err
		}
		if code := status.Code(err); terminal(code) {
			s.log.InfoContext(ctx, "agent secrets: server refused the secret", "secret", name, "spiffe_id", id.String(), "code", code.String())
			return status.Error(code, status.Convert(err).Message())
		}
		backoff = min(max(2*backoff, 250*time.Millisecond), s.cfg.MaxBackoff)
		s.log.DebugContext(ctx, "agent secrets: watch interrupted; retrying", "secret", name, "spiffe_id", id.String(), "error", err, "retry_in", backoff.String())
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

type sendError struct{ err error }

func (e *sendError) Error() string { return e.err.Error() }

func (s *Service) forwardOnce(ctx context.Context, name string, id spiffeid.ID, entryID string, recv func(*secretsv1.Secret) error) error {
	cli, err := s.cfg.Server(ctx)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cli.Watch(ctx, &secretsv1.WatchSecretRequest{Name: name, SpiffeId: id.String(), EntryId: entryID})
	if err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		if err := recv(m); err != nil {
			return err
		}
	}
}

// Sink keeps one secret written to a file.
type Sink struct {
	// Name is the secret's name.
	Name string
	// SPIFFEID is the identity to fetch it for: a workload entry this
	// agent is authorized for.
	SPIFFEID spiffeid.ID
	// Path is the file, replaced atomically (mode 0400) on every change.
	Path string
}

// RunSink writes the secret to the sink's file whenever it changes, until
// ctx is done or the server refuses the secret.
func (s *Service) RunSink(ctx context.Context, sink Sink) error {
	if sink.Path == "" || sink.Name == "" || sink.SPIFFEID.IsZero() {
		return errors.New("agent secrets: a sink needs a name, a SPIFFE ID and a path")
	}
	return s.Forward(ctx, sink.Name, sink.SPIFFEID, "", func(m *secretsv1.Secret) error {
		if err := WriteFileAtomic(sink.Path, m.Value, 0o400); err != nil {
			s.log.ErrorContext(ctx, "agent secrets: sink write failed", "secret", sink.Name, "path", sink.Path, "error", err)
			return err
		}
		s.log.InfoContext(ctx, "agent secrets: sink updated", "secret", sink.Name, "path", sink.Path, "version", m.Version)
		return nil
	})
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory created with mode, synced, then renamed over path: readers
// see the old or the new content, never a partial one.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("agent secrets: create temporary file: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("agent secrets: chmod: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("agent secrets: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("agent secrets: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("agent secrets: close: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("agent secrets: rename: %w", err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
