package workloadapi_test

import (
	"slices"
	"testing"
	"time"

	"github.com/signet-id/signet/agent/workloadapi"
	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc/codes"
)

// TestFirstResponseWaitsForPendingSVID: a caller whose entry has no SVID
// yet (the agent mints on demand) waits for it and is served when it
// arrives; if it does not arrive within PendingTimeout (on the server's
// clock), the stream ends with Unavailable so the client retries.
func TestFirstResponseWaitsForPendingSVID(t *testing.T) {
	tests := []struct {
		name    string
		arrives bool
	}{
		{"SVID arrives", true},
		{"SVID never arrives", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := fakeclock.New(time.Now())
			e := startWith(t, func(c *workloadapi.Config) { c.Clock = clk; c.PendingTimeout = 10 * time.Second })
			// The entry is held without an SVID.
			e.u.Entries = append(slices.Clone(e.u.Entries), newEntry("e1", "/web", mySelector()))
			e.apply()
			ctx := testContext(t)
			s, err := e.rawClient().FetchX509SVID(withHeader(ctx), &workload.X509SVIDRequest{})
			if err != nil {
				t.Fatal(err)
			}
			// The stream waits on the pending timer.
			if err := clk.WaitForTimers(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if tt.arrives {
				e.rotate("e1")
				e.apply()
				if got := recvSVIDs(t, s); !slices.Equal(got, []string{"spiffe://example.org/web"}) {
					t.Fatalf("served %q", got)
				}
				return
			}
			clk.Advance(10 * time.Second)
			_, err = s.Recv()
			wantCode(t, err, codes.Unavailable)
		})
	}
}
