package keyspace

import (
	"context"
	"errors"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrTrustDomainMismatch is matched (errors.Is) when the state a server
// opens belongs to another trust domain than the one it is configured
// with.
var ErrTrustDomainMismatch = errors.New("trust domain mismatch")

// MismatchError names the trust domain the state belongs to, the one the
// server is configured with, where the state is, and what to do.
type MismatchError struct {
	Where      string // "data directory /x" or "etcd"
	Stored     string
	Configured string
	Fix        string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s holds the state of trust domain %q, but this server is configured with trust domain %q; "+
		"starting would hide every entry, agent and CA key of %q: %s",
		e.Where, e.Stored, e.Configured, e.Stored, e.Fix)
}

// Is makes errors.Is(err, ErrTrustDomainMismatch) true.
func (e *MismatchError) Is(target error) bool { return target == ErrTrustDomainMismatch }

// rootsPrefix is the parent of every trust domain's root.
const rootsPrefix = "/signet/"

// CheckTrustDomain refuses an etcd that holds another trust domain's keys
// while s's root is empty: a server restarted with a new trust domain on
// the old data would start empty and hide everything. When s's root holds
// keys, the etcd is s's (several trust domains may share an external etcd,
// each below its own root), and CheckTrustDomain returns nil. fix returns
// the advice to give for the stored trust domain (it depends on whether
// the etcd is embedded).
func CheckTrustDomain(ctx context.Context, cli *clientv3.Client, s Space, fix func(stored string) string) error {
	own, err := cli.Get(ctx, s.Root(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("keyspace: check trust domain: %w", err)
	}
	if own.Count > 0 {
		return nil
	}
	other, err := cli.Get(ctx, rootsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
	if err != nil {
		return fmt.Errorf("keyspace: check trust domain: %w", err)
	}
	if len(other.Kvs) == 0 {
		return nil
	}
	td, _, _ := strings.Cut(strings.TrimPrefix(string(other.Kvs[0].Key), rootsPrefix), "/")
	return fmt.Errorf("keyspace: %w", &MismatchError{Where: "etcd", Stored: td, Configured: s.td.Name(), Fix: fix(td)})
}
