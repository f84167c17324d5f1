package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"strings"

	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/signet-id/signet/privdir"
	"github.com/signet-id/signet/server/keyspace"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// lockDataDir creates (0700) and checks the data directory, then locks it
// so that a second server on it exits at once instead of waiting on etcd.
func lockDataDir(dir string) (func(), error) {
	if err := privdir.EnsureDir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data directory: %w", err)
	}
	l, err := privdir.LockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return func() { _ = l.Unlock() }, nil
}

// openEtcdCtx runs openEtcd but returns as soon as ctx is done: starting
// the embedded etcd can block without looking at ctx (for example on the
// bolt file lock), and a signal must stop start-up at any point. A start
// that completes after ctx is done is closed again.
func (s *Server) openEtcdCtx(ctx context.Context) (*clientv3.Client, func(), error) {
	type result struct {
		cli   *clientv3.Client
		close func()
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c, cl, err := s.openEtcd(ctx)
		done <- result{c, cl, err}
	}()
	select {
	case r := <-done:
		return r.cli, r.close, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.err == nil {
				r.close()
			}
		}()
		return nil, nil, fmt.Errorf("server: start-up interrupted while opening etcd: %w", ctx.Err())
	}
}

// listenAdmin opens the admin socket with mode 0600 in a checked 0700
// directory. It refuses to take over a socket a live process answers on.
func listenAdmin(path string) (net.Listener, error) {
	if err := privdir.EnsureDir(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("server: admin socket directory: %w", err)
	}
	lis, err := privdir.ListenUnix(path, 0o600)
	if err != nil {
		return nil, fmt.Errorf("server: admin socket: %w", err)
	}
	return lis, nil
}

// writeBundleFile writes the current bundle to DataDir/BundleFile (0644:
// a bundle is public), atomically and without following symlinks.
func (s *Server) writeBundleFile() {
	data, err := bundlecodec.Marshal(s.ca.Bundle(), s.ca.MLDSAJWTKeys())
	if err != nil {
		s.log.Error("failed to encode the bundle", "error", err)
		return
	}
	path := filepath.Join(s.cfg.DataDir, BundleFile)
	if err := privdir.WriteFile(path, data, 0o644); err != nil {
		s.log.Error("failed to write the bundle file", slog.String("path", path), "error", err)
	}
}

// TrustDomainFile is the data directory's record of the trust domain whose
// state the directory holds; a server configured with another one refuses
// to start on it.
const TrustDomainFile = "trust_domain"

// mismatchFix is the advice of a trust domain mismatch.
func (s *Server) mismatchFix(stored string) string {
	if len(s.cfg.Etcd.Endpoints) > 0 {
		return fmt.Sprintf("start with trust_domain = %q, or point the server at another etcd (or a new data_dir and another etcd) for %q",
			stored, s.cfg.TrustDomain.Name())
	}
	return fmt.Sprintf("start with trust_domain = %q, or use a new data_dir for %q (keep %s if you need the old state)",
		stored, s.cfg.TrustDomain.Name(), s.cfg.DataDir)
}

// checkTrustDomainFile refuses a data directory recorded for another trust
// domain. It reports whether the record is missing (written once the etcd
// check passed).
func (s *Server) checkTrustDomainFile() (missing bool, err error) {
	path := filepath.Join(s.cfg.DataDir, TrustDomainFile)
	data, err := privdir.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("server: %w", err)
	}
	stored := strings.TrimSpace(string(data))
	if stored != s.cfg.TrustDomain.Name() {
		return false, fmt.Errorf("server: %w", &keyspace.MismatchError{
			Where: "data directory " + s.cfg.DataDir, Stored: stored,
			Configured: s.cfg.TrustDomain.Name(), Fix: s.mismatchFix(stored),
		})
	}
	return false, nil
}

// checkTrustDomain refuses state of another trust domain (the data
// directory's record, then the etcd keys) and records the trust domain in
// a data directory that has no record yet.
func (s *Server) checkTrustDomain(ctx context.Context, cli *clientv3.Client) error {
	missing, err := s.checkTrustDomainFile()
	if err != nil {
		return err
	}
	if err := keyspace.CheckTrustDomain(ctx, cli, s.keys(), s.mismatchFix); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if missing {
		if err := privdir.WriteFile(filepath.Join(s.cfg.DataDir, TrustDomainFile), []byte(s.cfg.TrustDomain.Name()+"\n"), 0o600); err != nil {
			return fmt.Errorf("server: record the trust domain: %w", err)
		}
	}
	return nil
}
