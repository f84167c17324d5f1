// Command floodmem measures a Signet server's memory under the
// unauthenticated floods of the 2026-12 security review (finding 6): it
// starts `signet server run` from the given binary, runs one bounded flood
// against its agent listener on loopback, and prints the server's peak RSS,
// heap in use and goroutines (sampled from /proc and /metrics). Run it once
// per binary to compare, e.g.
//
//	go run ./conformance/floodmem -signet /tmp/old/signet -flood attestidle
//
// It is a one-off measurement tool, not a test.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signet-id/signet/internal/procfs"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	bin := flag.String("signet", "signet", "signet binary to measure")
	flood := flag.String("flood", "attestidle", "attestidle (idle AttestAgent streams), bigattest (concurrent 4 MB AttestAgent messages), bighealth (concurrent 4 MB health checks) or tcpidle (connections that send nothing)")
	n := flag.Int("n", 0, "streams, messages or connections (default 20000, 200, 1500)")
	conns := flag.Int("conns", 10, "connections to spread streams over")
	port := flag.Int("port", 18481, "agent listener port (metrics on port+1)")
	hold := flag.Duration("hold", 5*time.Second, "how long to hold the flood once sent")
	flag.Parse()
	if err := run(*bin, *flood, *n, *conns, *port, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "floodmem:", err)
		os.Exit(1)
	}
}

func run(bin, flood string, n, conns, port int, hold time.Duration) error {
	dir, err := os.MkdirTemp("", "floodmem")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	metrics := fmt.Sprintf("127.0.0.1:%d", port+1)
	cmd := exec.Command(bin, "server", "run", "--trust-domain", "example.org", "--data-dir", filepath.Join(dir, "srv"),
		"--socket-path", filepath.Join(dir, "admin.sock"), "--bind-address", addr, "--metrics-address", metrics)
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := waitReady(addr, metrics); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	base := sample(cmd.Process.Pid, metrics)
	peak := &peakSampler{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			peak.add(sample(cmd.Process.Pid, metrics))
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	var outcome string
	switch flood {
	case "attestidle":
		outcome, err = attestIdle(addr, def(n, 20000), conns, hold)
	case "bigattest":
		outcome, err = bigAttest(addr, def(n, 200), conns)
	case "bighealth":
		outcome, err = bigHealth(addr, def(n, 200), conns)
	case "tcpidle":
		outcome, err = tcpIdle(addr, def(n, 1500), hold)
	default:
		err = fmt.Errorf("unknown flood %q", flood)
	}
	close(stop)
	wg.Wait()
	if err != nil {
		return err
	}
	p := peak.max
	fmt.Printf("binary %s flood %s: %s\n", bin, flood, outcome)
	fmt.Printf("  baseline: rss %.0f MB, heap in use %.0f MB, goroutines %.0f\n", base.rss/1e6, base.heap/1e6, base.goroutines)
	fmt.Printf("  peak:     rss %.0f MB, heap in use %.0f MB, goroutines %.0f\n", p.rss/1e6, p.heap/1e6, p.goroutines)
	return nil
}

func def(n, d int) int {
	if n <= 0 {
		return d
	}
	return n
}

func waitReady(addr, metrics string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			if r, err := http.Get("http://" + metrics + "/metrics"); err == nil {
				r.Body.Close()
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("server on %s not ready after 60 s", addr)
}

type stats struct{ rss, heap, goroutines float64 }

type peakSampler struct {
	mu  sync.Mutex
	max stats
}

func (p *peakSampler) add(s stats) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.max.rss = max(p.max.rss, s.rss)
	p.max.heap = max(p.max.heap, s.heap)
	p.max.goroutines = max(p.max.goroutines, s.goroutines)
}

// sample reads the server's RSS from /proc and its heap and goroutines
// from /metrics.
func sample(pid int, metrics string) stats {
	var s stats
	if st, err := procfs.ReadStatus(fmt.Sprintf("/proc/%d", pid)); err == nil {
		s.rss = float64(st.RSS)
	}
	c := http.Client{Timeout: 2 * time.Second}
	r, err := c.Get("http://" + metrics + "/metrics")
	if err != nil {
		return s
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "go_memstats_heap_inuse_bytes":
			s.heap = v
		case "go_goroutines":
			s.goroutines = v
		}
	}
	return s
}

var tlsConfig = &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13}

// attestIdle opens n AttestAgent streams over conns raw HTTP/2
// connections (ignoring the server's stream limit, as an attacker would)
// and sends no message on them; it counts the streams the server refused.
func attestIdle(addr string, n, conns int, hold time.Duration) (string, error) {
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":path", "/spire.api.server.agent.v1.Agent/AttestAgent"},
		{":authority", "localhost"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	var refused, answered, written atomic.Int64
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	per := n / conns
	for range conns {
		c, err := tls.Dial("tcp", addr, tlsConfig)
		if err != nil {
			return "", err
		}
		open = append(open, c)
		if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
			return "", err
		}
		fr := http2.NewFramer(c, c)
		_ = fr.WriteSettings()
		go func() {
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					return
				}
				switch f := f.(type) {
				case *http2.RSTStreamFrame:
					refused.Add(1)
				case *http2.HeadersFrame:
					answered.Add(1)
				case *http2.SettingsFrame:
					if !f.IsAck() {
						_ = fr.WriteSettingsAck()
					}
				}
			}
		}()
		for i := range per {
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hdr.Bytes(), EndHeaders: true}); err != nil {
				break
			}
			written.Add(1)
		}
	}
	time.Sleep(hold)
	return fmt.Sprintf("%d idle AttestAgent streams opened over %d connections: %d reset or refused, %d answered with headers", written.Load(), conns, refused.Load(), answered.Load()), nil
}

// bigAttest sends n concurrent AttestAgent messages carrying a 4,000,000
// byte token over conns connections.
func bigAttest(addr string, n, conns int) (string, error) {
	var cc []*grpc.ClientConn
	for range conns {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
		if err != nil {
			return "", err
		}
		defer c.Close()
		cc = append(cc, c)
	}
	token := bytes.Repeat([]byte("a"), 4_000_000)
	codes := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			err := func() error {
				s, err := agentv1.NewAgentClient(cc[i%conns]).AttestAgent(ctx)
				if err != nil {
					return err
				}
				if err := s.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
					Data: &types.AttestationData{Type: "join_token", Payload: token}}}}); err != nil {
					_, err = s.Recv()
					return err
				}
				_, err = s.Recv()
				return err
			}()
			msg := "OK"
			if err != nil {
				msg = strings.SplitN(err.Error(), ": ", 3)[1]
				if len(msg) > 60 {
					msg = msg[:60]
				}
			}
			mu.Lock()
			codes[msg]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return fmt.Sprintf("%d concurrent 4 MB AttestAgent messages over %d connections: %v", n, conns, codes), nil
}

// bigHealth sends n concurrent health checks carrying a 4,000,000 byte
// service name over conns connections.
func bigHealth(addr string, n, conns int) (string, error) {
	var cc []*grpc.ClientConn
	for range conns {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
		if err != nil {
			return "", err
		}
		defer c.Close()
		cc = append(cc, c)
	}
	name := strings.Repeat("a", 4_000_000)
	codes := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, err := healthpb.NewHealthClient(cc[i%conns]).Check(ctx, &healthpb.HealthCheckRequest{Service: name})
			msg := "OK"
			if err != nil {
				msg = strings.SplitN(err.Error(), ": ", 3)[1]
				msg = msg[:min(len(msg), 60)]
			}
			mu.Lock()
			codes[msg]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return fmt.Sprintf("%d concurrent 4 MB health checks over %d connections: %v", n, conns, codes), nil
}

// tcpIdle opens n TCP connections that send nothing and counts those the
// server closed within hold.
func tcpIdle(addr string, n int, hold time.Duration) (string, error) {
	var closed atomic.Int64
	var cs []net.Conn
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return "", err
		}
		cs = append(cs, c)
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(hold))
			if _, err := c.Read(make([]byte, 1)); err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					closed.Add(1)
				}
			}
		}()
	}
	time.Sleep(hold + time.Second)
	return fmt.Sprintf("%d idle TCP connections: %d closed by the server within %s", n, closed.Load(), hold), nil
}
