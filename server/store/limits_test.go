package store

import (
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// The store refuses reserved and oversized entries whoever calls it (the
// join-token alias path wrote to the store directly, skipping the Entry
// API's checks).
func TestEntryLimitsWhateverTheCaller(t *testing.T) {
	td := testTD(t)
	s := newTestStore(t, td)
	ctx := testCtx(t)
	valid := func() *types.Entry {
		return &types.Entry{SpiffeId: id(td, "/w"), ParentId: id(td, "/spire/agent/a"), Selectors: sels("a:1")}
	}
	long := "/" + strings.Repeat("p", MaxIDLength-len("spiffe://"+td.Name())-1) // 2048 bytes in all
	many := func(n int) []*types.Selector {
		out := make([]*types.Selector, n)
		for i := range out {
			out[i] = &types.Selector{Type: "t", Value: strings.Repeat("v", i+1)}
		}
		return out
	}
	tests := []struct {
		name   string
		modify func(*types.Entry)
		want   string
	}{
		{"server ID", func(e *types.Entry) { e.SpiffeId = id(td, "/spire/server") }, "reserved namespace"},
		{"agent ID", func(e *types.Entry) { e.SpiffeId = id(td, "/spire/agent/join_token/x") }, "reserved namespace"},
		{"bare /spire", func(e *types.Entry) { e.SpiffeId = id(td, "/spire") }, "reserved namespace"},
		{"2049-byte spiffe_id", func(e *types.Entry) { e.SpiffeId = id(td, long+"p") }, "longer than the SPIFFE limit of 2048 bytes"},
		{"2049-byte parent_id", func(e *types.Entry) { e.ParentId = id(td, long+"p") }, "longer than the SPIFFE limit of 2048 bytes"},
		{"too many selectors", func(e *types.Entry) { e.Selectors = many(MaxSelectorsPerEntry + 1) }, "at most 64 per entry"},
		{"huge selector", func(e *types.Entry) { e.Selectors = []*types.Selector{{Type: "t", Value: strings.Repeat("v", 1<<20)}} }, "at most 2048"},
		{"too many DNS names", func(e *types.Entry) { e.DnsNames = make([]string, MaxDNSNamesPerEntry+1) }, "at most 100 per entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := valid()
			tt.modify(e)
			_, err := s.CreateEntry(ctx, e)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("create: err = %v, want ErrInvalid naming %q", err, tt.want)
			}
		})
	}
	// At the limits the entry is accepted, and an update cannot move it
	// into the reserved namespace.
	e := valid()
	e.SpiffeId = id(td, long)
	e.Selectors = many(MaxSelectorsPerEntry)
	created := mustCreateEntry(t, s, e)
	_, err := s.UpdateEntry(ctx, &types.Entry{Id: created.Id, SpiffeId: id(td, "/spire/server")}, &types.EntryMask{SpiffeId: true})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("update into /spire: err = %v, want ErrInvalid", err)
	}
}
