package e2e

import (
	"context"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// BenchmarkWorkloadAPI measures Workload API round trips through a real
// agent (attestation of the caller included), with one go-spiffe client
// reused across calls. p50 and p99 are reported as custom metrics.
func BenchmarkWorkloadAPI(b *testing.B) {
	dir, err := os.MkdirTemp("", "sgb")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv := startServer(b, dir)
	token := srv.token(b, 600)
	me := spiffeid.RequireFromPath(td, "/bench")
	srv.createEntry(b, me, agentIDFor(token), uidSelector(os.Getuid()))
	ag := startAgent(b, srv, dir, token)
	ctx := context.Background()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+ag.socket))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	if _, err := fetchX509(ctx, client); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, f func() error) {
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			start := time.Now()
			if err := f(); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	b.Run("FetchX509SVID", func(b *testing.B) {
		run(b, func() error {
			s, err := client.FetchX509SVID(ctx)
			if err == nil && s.ID != me {
				b.Fatalf("got %v", s.ID)
			}
			return err
		})
	})
	b.Run("FetchJWTSVID", func(b *testing.B) {
		aud := 0
		run(b, func() error {
			aud++
			// A fresh audience each time defeats the agent's JWT cache, so
			// this measures a server round trip.
			_, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "aud-" + strconv.Itoa(aud)})
			return err
		})
	})
}

func fetchX509(ctx context.Context, c *workloadapi.Client) (*workloadapi.X509Context, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		x, err := c.FetchX509Context(ctx)
		if err == nil {
			return x, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}
