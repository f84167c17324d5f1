package keyspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrMigrationConflict is returned when keys of an older layout collide with keys already
// in the current one (an older server wrote after the migration); nothing
// is overwritten.
var ErrMigrationConflict = errors.New("keyspace: migration conflict")

// ErrNewerLayout is returned when the data was written by a newer server.
var ErrNewerLayout = errors.New("keyspace: layout is newer than this server")

// Bounds of one migration transaction: etcd refuses more than 128
// operations per transaction (its default --max-txn-ops) and requests over
// 1.5 MiB.
const (
	batchKeys  = 50
	batchBytes = 1 << 20
)

// Migrate brings the trust domain's keys to the current layout: the keys
// of each older prefix move below the root, in batches of transactions that
// each put a key at its new place and delete it from the old one (so a key
// is always in exactly one place, and an interrupted migration resumes),
// then the version key records Version. It is idempotent, safe to run from
// several replicas at once, and returns at once when the version key is
// current. Every replica sharing the etcd must run this server version:
// an older one would keep writing the old prefixes.
func Migrate(ctx context.Context, cli *clientv3.Client, s Space, log *slog.Logger) error {
	resp, err := cli.Get(ctx, s.Version())
	if err != nil {
		return fmt.Errorf("keyspace: read layout version: %w", err)
	}
	if len(resp.Kvs) > 0 {
		v, err := strconv.Atoi(string(resp.Kvs[0].Value))
		switch {
		case err != nil:
			return fmt.Errorf("keyspace: layout version %q: %w", resp.Kvs[0].Value, err)
		case v > Version:
			return fmt.Errorf("%w: layout %d, this server knows %d", ErrNewerLayout, v, Version)
		case v == Version:
			return nil
		}
	}
	for _, m := range s.moves() {
		n, err := m.run(ctx, cli)
		if err != nil {
			return err
		}
		if n > 0 {
			log.Info("moved etcd keys to the trust domain's root", "from", m.from, "to", m.to, "keys", n)
		}
	}
	// Create the version key, or update an older one; a concurrent replica
	// may have written it first, which is as good.
	if _, err := cli.Put(ctx, s.Version(), strconv.Itoa(Version)); err != nil {
		return fmt.Errorf("keyspace: write layout version: %w", err)
	}
	log.Info("etcd key layout is current", "version", Version, "root", s.Root())
	return nil
}

// run moves every key below m.from to m.to and returns how many it moved.
func (m move) run(ctx context.Context, cli *clientv3.Client) (int, error) {
	moved := 0
	for {
		resp, err := cli.Get(ctx, m.from, clientv3.WithPrefix(), clientv3.WithLimit(batchKeys))
		if err != nil {
			return moved, fmt.Errorf("keyspace: list %s: %w", m.from, err)
		}
		if len(resp.Kvs) == 0 {
			return moved, nil
		}
		var (
			cmps []clientv3.Cmp
			ops  []clientv3.Op
			size int
		)
		for _, kv := range resp.Kvs {
			if size > 0 && size+len(kv.Key)+len(kv.Value) > batchBytes {
				break
			}
			size += len(kv.Key) + len(kv.Value)
			old := string(kv.Key)
			to := m.to + strings.TrimPrefix(old, m.from)
			var put []clientv3.OpOption
			if kv.Lease != 0 {
				put = append(put, clientv3.WithLease(clientv3.LeaseID(kv.Lease)))
			}
			cmps = append(cmps,
				clientv3.Compare(clientv3.ModRevision(old), "=", kv.ModRevision),
				clientv3.Compare(clientv3.CreateRevision(to), "=", 0))
			ops = append(ops, clientv3.OpPut(to, string(kv.Value), put...), clientv3.OpDelete(old))
		}
		tx, err := cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return moved, fmt.Errorf("keyspace: move keys from %s to %s: %w", m.from, m.to, err)
		}
		if tx.Succeeded {
			moved += len(ops) / 2
			continue
		}
		// Another replica moved some of them, or a key exists in both
		// places: check which before retrying.
		for _, kv := range resp.Kvs[:len(ops)/2] {
			old := string(kv.Key)
			to := m.to + strings.TrimPrefix(old, m.from)
			both, err := cli.Txn(ctx).If(
				clientv3.Compare(clientv3.CreateRevision(old), ">", 0),
				clientv3.Compare(clientv3.CreateRevision(to), ">", 0)).Commit()
			if err != nil {
				return moved, fmt.Errorf("keyspace: move keys from %s to %s: %w", m.from, m.to, err)
			}
			if both.Succeeded {
				return moved, fmt.Errorf("%w: %s and %s both exist; remove one (an older server wrote after the migration?)", ErrMigrationConflict, old, to)
			}
		}
	}
}
