package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/signet-id/signet/attest/jointoken"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The store spends the tokens of join-token attestation.
var _ jointoken.Store = (*Store)(nil)

// joinTokenRecord is stored under the SHA-256 of the token; the token
// itself never reaches etcd.
type joinTokenRecord struct {
	ExpiresAt int64 `json:"expires_at"`
}

func (s *Store) joinTokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return s.prefix + joinTokensDir + hex.EncodeToString(sum[:])
}

func encodeJoinToken(expiresAt time.Time) (string, error) {
	data, err := json.Marshal(joinTokenRecord{ExpiresAt: expiresAt.Unix()})
	if err != nil {
		return "", fmt.Errorf("store: encode join token: %w", err)
	}
	out, err := json.Marshal(envelope{V: envelopeVersion, Data: data})
	if err != nil {
		return "", fmt.Errorf("store: encode join token: %w", err)
	}
	return string(out), nil
}

func decodeJoinToken(value []byte) (time.Time, error) {
	var env envelope
	if err := json.Unmarshal(value, &env); err != nil {
		return time.Time{}, fmt.Errorf("store: decode join token: %w", err)
	}
	if env.V != envelopeVersion {
		return time.Time{}, fmt.Errorf("store: unsupported join token version %d", env.V)
	}
	var rec joinTokenRecord
	if err := json.Unmarshal(env.Data, &rec); err != nil {
		return time.Time{}, fmt.Errorf("store: decode join token: %w", err)
	}
	return time.Unix(rec.ExpiresAt, 0), nil
}

// CreateJoinToken stores a single-use join token valid until expiresAt
// (second precision). Only the token's SHA-256 is stored.
// ErrAlreadyExists if the token exists.
func (s *Store) CreateJoinToken(ctx context.Context, token string, expiresAt time.Time) error {
	if token == "" {
		return invalidf("missing join token")
	}
	if expiresAt.IsZero() {
		return invalidf("missing join token expiry")
	}
	value, err := encodeJoinToken(expiresAt)
	if err != nil {
		return err
	}
	key := s.joinTokenKey(token)
	resp, err := s.txn(ctx,
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(key, value)})
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("store: join token: %w", ErrAlreadyExists)
	}
	return nil
}

// ConsumeJoinToken atomically deletes the join token and returns its
// expiry. ErrNotFound if the token is unknown or was already used;
// ErrExpired (the token is deleted too) if it expired at or before now.
func (s *Store) ConsumeJoinToken(ctx context.Context, token string, now time.Time) (time.Time, error) {
	if token == "" {
		return time.Time{}, fmt.Errorf("store: join token: %w", ErrNotFound)
	}
	key := s.joinTokenKey(token)
	// A read first: an unknown token (a wrong guess) costs no raft
	// proposal or WAL fsync.
	got, err := s.cli.Get(ctx, key, clientv3.WithCountOnly())
	if err != nil {
		return time.Time{}, fmt.Errorf("store: look up join token: %w", err)
	}
	if got.Count == 0 {
		return time.Time{}, fmt.Errorf("store: join token: %w", ErrNotFound)
	}
	// A delete returning the previous value is a single atomic read and
	// delete: of concurrent consumers exactly one sees the value.
	resp, err := s.cli.Delete(ctx, key, clientv3.WithPrevKV())
	if err != nil {
		return time.Time{}, fmt.Errorf("store: consume join token: %w", err)
	}
	if len(resp.PrevKvs) == 0 {
		return time.Time{}, fmt.Errorf("store: join token: %w", ErrNotFound)
	}
	s.noteWrite(resp.Header.Revision)
	expiresAt, err := decodeJoinToken(resp.PrevKvs[0].Value)
	if err != nil {
		return time.Time{}, err
	}
	if !now.Before(expiresAt) {
		return expiresAt, fmt.Errorf("store: join token expired at %s: %w", expiresAt.UTC().Format(time.RFC3339), ErrExpired)
	}
	return expiresAt, nil
}

// PruneJoinTokens deletes the join tokens that expired at or before
// before, and returns how many it deleted.
func (s *Store) PruneJoinTokens(ctx context.Context, before time.Time) (int, error) {
	prefix := s.prefix + joinTokensDir
	end := clientv3.GetPrefixRangeEnd(prefix)
	key := prefix
	pruned := 0
	for {
		resp, err := s.cli.Get(ctx, key, clientv3.WithRange(end), clientv3.WithLimit(listPageSize))
		if err != nil {
			return pruned, fmt.Errorf("store: list join tokens: %w", err)
		}
		for _, kv := range resp.Kvs {
			expiresAt, err := decodeJoinToken(kv.Value)
			if err != nil {
				s.log.Warn("store: undecodable join token record", "error", err)
				continue
			}
			if expiresAt.After(before) {
				continue
			}
			tr, err := s.txn(ctx,
				[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)},
				[]clientv3.Op{clientv3.OpDelete(string(kv.Key))})
			if err != nil {
				return pruned, err
			}
			if tr.Succeeded {
				pruned++
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return pruned, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
