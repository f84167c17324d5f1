package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/limits"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// BenchmarkMintX509SVID calls MintX509SVID over the admin socket of a
// real server (embedded etcd, event log, gRPC) with 1 and 8 callers in
// flight, one CSR made beforehand. After the run it reports the process's
// heap in use after a GC and its RSS (server and benchmark client share
// the process; compare runs, not absolute figures with a lone server).
//
//	nice go test -run '^$' -bench BenchmarkMintX509SVID -count 5 ./server/
//
// Profile it with -cpuprofile/-memprofile (docs/scaling.md).
func BenchmarkMintX509SVID(b *testing.B) {
	for _, conc := range []int{1, 8} {
		b.Run("conc="+strconv.Itoa(conc), func(b *testing.B) {
			s := startServerWith(b, func(c *server.Config) { c.X509SVIDTTL = time.Hour })
			client := svidv1.NewSVIDClient(s.admin)
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			u, _ := url.Parse("spiffe://example.org/bench/workload")
			csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			req := &svidv1.MintX509SVIDRequest{Csr: csr}
			if _, err := client.MintX509SVID(ctx, req); err != nil { // warm up
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			errs := make(chan error, conc)
			for w := range conc {
				n := b.N / conc
				if w < b.N%conc {
					n++
				}
				wg.Go(func() {
					for range n {
						if _, err := client.MintX509SVID(ctx, req); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "svids/s")
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
			b.ReportMetric(rssMiB(), "rss-MiB")
		})
	}
}

// rssMiB is this process's resident set size (Linux), or 0.
func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkAgentConnMemory opens b.N idle TLS connections to the agent
// listener, each after one health RPC (an agent's connection between
// calls), and reports the heap they hold per connection: both ends, as
// client and server share the process, so compare runs of the same
// benchmark rather than read it as the server's alone.
//
//	nice go test -run '^$' -bench BenchmarkAgentConnMemory -benchtime 500x -count 5 ./server/
func BenchmarkAgentConnMemory(b *testing.B) {
	s := startServerWith(b, func(c *server.Config) {
		c.Limits = limits.Config{MaxConnsPerIP: -1}
	})
	tc := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: s.roots, ServerName: "localhost"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	before := heap()
	conns := make([]*grpc.ClientConn, 0, b.N)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	b.ResetTimer()
	for range b.N {
		c, err := grpc.NewClient(s.AgentAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(heap()-before)/float64(b.N), "heap-B/conn")
}
