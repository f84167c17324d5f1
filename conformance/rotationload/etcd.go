package rotationload

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/signet-id/signet/server/etcdserver"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdPage is how many keys one range read returns while counting.
const etcdPage = 5000

// EtcdStats describes the server's etcd keyspace after a run.
type EtcdStats struct {
	// Keys is the number of keys; ByPrefix splits them by their first
	// three path segments (such as /signet/example.org/entries/).
	Keys     int
	ByPrefix map[string]int
	// DBSize and DBSizeInUse are the backend database's size in bytes.
	DBSize, DBSizeInUse int64
}

// inspectEtcd opens the embedded etcd member the (stopped) server left in
// dir and counts its keys.
func inspectEtcd(ctx context.Context, dir string, log *slog.Logger) (EtcdStats, error) {
	e, err := etcdserver.Start(ctx, etcdserver.Config{Dir: dir, Logger: log})
	if err != nil {
		return EtcdStats{}, fmt.Errorf("rotationload: reopen etcd: %w", err)
	}
	defer e.Close()
	cli := e.Client()
	st, err := cli.Status(ctx, e.Endpoints()[0])
	if err != nil {
		return EtcdStats{}, fmt.Errorf("rotationload: etcd status: %w", err)
	}
	out := EtcdStats{ByPrefix: map[string]int{}, DBSize: st.DbSize, DBSizeInUse: st.DbSizeInUse}
	cnt, err := cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		return EtcdStats{}, fmt.Errorf("rotationload: count etcd keys: %w", err)
	}
	rev := cnt.Header.Revision
	key := "\x00"
	for range cnt.Count/etcdPage + 2 {
		resp, err := cli.Get(ctx, key, clientv3.WithFromKey(), clientv3.WithKeysOnly(), clientv3.WithLimit(etcdPage), clientv3.WithRev(rev))
		if err != nil {
			return EtcdStats{}, fmt.Errorf("rotationload: list etcd keys: %w", err)
		}
		for _, kv := range resp.Kvs {
			out.Keys++
			out.ByPrefix[keyGroup(string(kv.Key))]++
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	if int64(out.Keys) != cnt.Count {
		return out, fmt.Errorf("rotationload: listed %d etcd keys, counted %d", out.Keys, cnt.Count)
	}
	return out, nil
}

// keyGroup returns a key's first three path segments ("/a/b/c/").
func keyGroup(k string) string {
	parts := strings.SplitN(k, "/", 5)
	if len(parts) < 5 {
		return k
	}
	return strings.Join(parts[:4], "/") + "/"
}
