package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/signet-id/signet/rotation/renewal"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// JWTMinter obtains a new JWT-SVID, typically from the server.
type JWTMinter interface {
	MintJWTSVID(ctx context.Context, id spiffeid.ID, audience []string) (token string, expiresAt time.Time, err error)
}

// JWTSVID is a cached JWT-SVID.
type JWTSVID struct {
	Token    string
	ID       spiffeid.ID
	Audience []string
	// IssuedAt is when the cache asked for the token.
	IssuedAt  time.Time
	ExpiresAt time.Time
}

var (
	// ErrNoJWTMinter is returned by FetchJWTSVID when the cache has no
	// JWTMinter.
	ErrNoJWTMinter = errors.New("cache: no JWT-SVID minter configured")

	errMissingSPIFFEID = errors.New("cache: entry has no SPIFFE ID")
)

// FetchJWTSVID returns a JWT-SVID for the entry's SPIFFE ID and the
// audience: a cached one while it has more than half of its lifetime left,
// else a newly minted one. The audience order does not matter.
func (c *Cache) FetchJWTSVID(ctx context.Context, entry *types.Entry, audience []string) (*JWTSVID, error) {
	if c.minter == nil {
		return nil, ErrNoJWTMinter
	}
	id, err := EntrySPIFFEID(entry)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if len(audience) == 0 {
		return nil, errors.New("cache: audience is required")
	}
	key := jwtKey(id, audience)
	now := c.now()
	if svid, ok := c.jwt.get(key, now); ok {
		return svid, nil
	}

	token, expiresAt, err := c.minter.MintJWTSVID(ctx, id, slices.Clone(audience))
	if err != nil {
		return nil, fmt.Errorf("cache: mint JWT-SVID for %s: %w", id, err)
	}
	svid := &JWTSVID{
		Token:     token,
		ID:        id,
		Audience:  slices.Clone(audience),
		IssuedAt:  now,
		ExpiresAt: expiresAt,
	}
	if expiresAt.After(now) {
		c.jwt.put(key, svid, now)
	}
	return copyJWTSVID(svid), nil
}

func jwtKey(id spiffeid.ID, audience []string) string {
	aud := slices.Clone(audience)
	slices.Sort(aud)
	aud = slices.Compact(aud)
	var b strings.Builder
	b.WriteString(id.String())
	for _, a := range aud {
		// A NUL cannot occur in a SPIFFE ID; length-prefix audiences.
		fmt.Fprintf(&b, "\x00%d:%s", len(a), a)
	}
	return b.String()
}

// fresh reports whether more than half of the token's lifetime is left.
func (s *JWTSVID) fresh(now time.Time) bool {
	return now.Before(renewal.Default().RenewAt(s.IssuedAt, s.ExpiresAt))
}

func copyJWTSVID(s *JWTSVID) *JWTSVID {
	cp := *s
	cp.Audience = slices.Clone(s.Audience)
	return &cp
}

type jwtCache struct {
	mu  sync.Mutex
	max int
	m   map[string]*JWTSVID
}

func (j *jwtCache) get(key string, now time.Time) (*JWTSVID, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	s, ok := j.m[key]
	if !ok {
		return nil, false
	}
	if !s.fresh(now) {
		delete(j.m, key)
		return nil, false
	}
	return copyJWTSVID(s), true
}

func (j *jwtCache) put(key string, s *JWTSVID, now time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.m[key]; !ok && len(j.m) >= j.max {
		for k, v := range j.m {
			if !v.fresh(now) {
				delete(j.m, k)
			}
		}
		// Still full: evict the token that expires first.
		for len(j.m) >= j.max {
			var oldest string
			var first time.Time
			for k, v := range j.m {
				if oldest == "" || v.ExpiresAt.Before(first) {
					oldest, first = k, v.ExpiresAt
				}
			}
			delete(j.m, oldest)
		}
	}
	j.m[key] = s
}

func (j *jwtCache) clear() {
	j.mu.Lock()
	defer j.mu.Unlock()
	clear(j.m)
}
