//go:build linux

package workloadapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	gsw "github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/agent/workloadapi"
	"github.com/signet-id/signet/internal/nobodytest"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory being read
}

// waitFDs waits (bounded) until at most want descriptors are open.
func waitFDs(t *testing.T, want int) {
	t.Helper()
	var n int
	for i := 0; i < 400; i++ {
		if n = openFDs(t); n <= want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%d file descriptors open, want at most %d (baseline)", n, want)
}

type floodResult struct {
	Kind string `json:"kind"` // "conn" or "stream"
	N    int    `json:"n"`
	Code string `json:"code"`
	Msg  string `json:"msg,omitempty"`
}

// TestPerUIDLimits is the flood of finding 9 of the 2026-12 security
// review, scaled down: uid 65534 opens more connections, and more streams,
// than its limits allow. The excess fails with ResourceExhausted naming the
// limit, while uid 0 can still connect and fetch; once the flooder exits
// the agent's file descriptors return to their baseline.
func TestPerUIDLimits(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the flooder as uid 65534")
	}
	const maxConns, maxCalls, extraConns = 4, 6, 3
	e := startWith(t, func(c *workloadapi.Config) {
		c.Limits = workloadapi.Limits{MaxConnsPerUID: maxConns, MaxCallsPerUID: maxCalls}
	}, newEntry("root", "/root-workload", "uid:0"), newEntry("nobody", "/nobody-workload", "uid:65534"))
	if err := os.Chmod(filepath.Dir(filepath.Dir(e.sock)), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := suidCapableDir(t) // any directory uid 65534 can traverse
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	flooder := filepath.Join(dir, "flooder")
	nobodytest.CopyFile(t, self, flooder, 0o755)
	baseline := openFDs(t)

	results, stop := startFlooder(t, flooder, e.sock, maxConns+extraConns, maxCalls-maxConns+1)

	var connOK, connRefused, streamOK, streamRefused int
	for _, r := range results {
		switch {
		case r.Code == "OK" && r.Kind == "conn":
			connOK++
		case r.Code == "OK":
			streamOK++
		case r.Code == "ResourceExhausted" && r.Kind == "conn" && strings.Contains(r.Msg, "--workload-max-conns-per-uid 4"):
			connRefused++
		case r.Code == "ResourceExhausted" && r.Kind == "stream" && strings.Contains(r.Msg, "--workload-max-calls-per-uid 6"):
			streamRefused++
		default:
			t.Errorf("unexpected result %+v", r)
		}
	}
	if connOK != maxConns || connRefused != extraConns || streamOK != maxCalls-maxConns || streamRefused != 1 {
		t.Errorf("connections ok/refused %d/%d (want %d/%d), extra streams ok/refused %d/%d (want %d/1)",
			connOK, connRefused, maxConns, extraConns, streamOK, streamRefused, maxCalls-maxConns)
	}
	t.Logf("flooder: %d connections served, %d refused; %d extra streams served, %d refused; fds %d (baseline %d)",
		connOK, connRefused, streamOK, streamRefused, openFDs(t), baseline)

	// Another user is not affected.
	ctx := testContext(t)
	svid, err := gsw.FetchX509SVID(ctx, gsw.WithAddr(e.addr))
	if err != nil {
		t.Fatalf("uid 0 while uid 65534 is at its limits: %v", err)
	}
	if got := svid.ID.String(); got != "spiffe://example.org/root-workload" {
		t.Fatalf("uid 0 got %s", got)
	}

	stop()
	waitFDs(t, baseline)

	// The slots were released: uid 65534 gets its full quota again.
	again, stop := startFlooder(t, flooder, e.sock, maxConns, maxCalls-maxConns)
	for _, r := range again {
		if r.Code != "OK" {
			t.Errorf("after the flooder exited: %+v", r)
		}
	}
	stop()
	waitFDs(t, baseline)

	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	refusals := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "signet_workload_api_limit_refusals_total" {
			for _, m := range mf.GetMetric() {
				refusals[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if refusals["max_conns_per_uid"] != extraConns || refusals["max_calls_per_uid"] != 1 {
		t.Errorf("limit_refusals_total %v", refusals)
	}
}

// startFlooder runs TestHelperFlooder as uid 65534 and returns its results
// once it holds its connections, and a function that ends it.
func startFlooder(t *testing.T, flooder, sock string, conns, streams int) ([]floodResult, func()) {
	t.Helper()
	cmd := exec.Command(flooder, "-test.run=^TestHelperFlooder$")
	cmd.Env = append(os.Environ(), "SIGNET_FLOOD_SOCK="+sock,
		"SIGNET_FLOOD_CONNS="+strconv.Itoa(conns), "SIGNET_FLOOD_STREAMS="+strconv.Itoa(streams))
	nobodytest.As(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	results := readFlood(t, stdout)
	return results, func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("flooder: %v", err)
		}
	}
}

func readFlood(t *testing.T, r io.Reader) []floodResult {
	t.Helper()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var out []floodResult
	deadline := time.After(60 * time.Second) // a safety net, not a timing assertion
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("flooder ended before HOLDING; results %v", out)
			}
			if line == "HOLDING" {
				return out
			}
			var res floodResult
			if err := json.Unmarshal([]byte(line), &res); err != nil || res.Kind == "" {
				t.Logf("flooder: %s", line)
				continue
			}
			out = append(out, res)
		case <-deadline:
			t.Fatalf("flooder did not finish; results %v", out)
		}
	}
}

// TestHelperFlooder is the uid 65534 process of TestPerUIDLimits: it opens
// SIGNET_FLOOD_CONNS connections with one X.509 stream each, then
// SIGNET_FLOOD_STREAMS more streams on the first, reports each outcome, and
// holds everything open until stdin closes.
func TestHelperFlooder(t *testing.T) {
	sock := os.Getenv("SIGNET_FLOOD_SOCK")
	if sock == "" {
		t.Skip("helper process only")
	}
	conns, _ := strconv.Atoi(os.Getenv("SIGNET_FLOOD_CONNS"))
	streams, _ := strconv.Atoi(os.Getenv("SIGNET_FLOOD_STREAMS"))
	out := json.NewEncoder(os.Stdout)
	ctx := withHeader(context.Background())
	open := func(cc *grpc.ClientConn) error {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		s, err := workload.NewSpiffeWorkloadAPIClient(cc).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
		if err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { _, err := s.Recv(); done <- err }()
		select {
		case err := <-done:
			return err
		case <-rctx.Done():
			return rctx.Err()
		}
	}
	report := func(kind string, n int, err error) {
		out.Encode(floodResult{Kind: kind, N: n, Code: status.Code(err).String(), Msg: status.Convert(err).Message()})
	}
	var first *grpc.ClientConn
	for i := 0; i < conns; i++ {
		cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = cc
		}
		report("conn", i, open(cc))
	}
	for i := 0; i < streams; i++ {
		report("stream", i, open(first))
	}
	os.Stdout.WriteString("HOLDING\n")
	io.Copy(io.Discard, os.Stdin)
}

// TestIdleConnectionsClosed: a connection that never completes the HTTP/2
// preface and one whose RPCs have ended are closed by the agent, and its
// file descriptors released, without the client doing anything.
func TestIdleConnectionsClosed(t *testing.T) {
	e := startWith(t, func(c *workloadapi.Config) {
		c.Limits = workloadapi.Limits{IdleTimeout: 200 * time.Millisecond, HandshakeTimeout: 200 * time.Millisecond}
	}, newEntry("self", "/self", mySelector()))
	baseline := openFDs(t)

	// Silent connection: the server closes it (read returns EOF).
	raw, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(30 * time.Second)) // a safety net
	if _, err := io.Copy(io.Discard, raw); err != nil {
		t.Fatalf("silent connection: %v, want EOF from the server closing it", err)
	}
	raw.Close()

	// A client that made one call and keeps its ClientConn.
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := testContext(t)
	if _, err := workload.NewSpiffeWorkloadAPIClient(cc).FetchJWTSVID(withHeader(ctx), &workload.JWTSVIDRequest{Audience: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	waitFDs(t, baseline)
	// The client reconnects transparently.
	if _, err := gsw.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"}, gsw.WithAddr(e.addr)); err != nil {
		t.Fatal(err)
	}
}
