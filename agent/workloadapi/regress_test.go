package workloadapi_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/agent/workloadapi"
	"github.com/signet-id/signet/attest/unix"
)

// TestValidateJWTSVIDWrongAudienceRaw calls ValidateJWTSVID with the raw
// generated client: go-spiffe's client re-checks the audience itself, so
// only a raw call shows what the agent answers.
func TestValidateJWTSVIDWrongAudienceRaw(t *testing.T) {
	e := start(t, newEntry("e1", "/web", mySelector()))
	ctx := withHeader(testContext(t))
	client := e.rawClient()
	resp, err := client.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"db"}})
	if err != nil {
		t.Fatal(err)
	}
	token := resp.Svids[0].Svid

	if _, err := client.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "db", Svid: token}); err != nil {
		t.Fatalf("right audience: %v", err)
	}
	for _, aud := range []string{"other", "d", "db ", "spiffe://example.org/db"} {
		got, err := client.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: aud, Svid: token})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("audience %q: got %v (%v, response %v), want InvalidArgument", aud, status.Code(err), err, got)
		}
	}
}

// TestEntryNeedsAllItsSelectors: a workload gets an entry's SVID only if
// it has every selector of the entry, not just one of them, over the Workload
// API (X.509 and JWT).
func TestEntryNeedsAllItsSelectors(t *testing.T) {
	e := start(t,
		newEntry("e1", "/mine", mySelector()),
		newEntry("e2", "/mine-and-other", mySelector(), otherSelector()),
	)
	ctx := withHeader(testContext(t))
	client := e.rawClient()
	s, err := client.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := recvSVIDs(t, s); !slices.Equal(got, []string{"spiffe://example.org/mine"}) {
		t.Fatalf("X.509-SVIDs %q, want only spiffe://example.org/mine", got)
	}
	_, err = client.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"a"}, SpiffeId: "spiffe://example.org/mine-and-other"})
	wantCode(t, err, codes.PermissionDenied)
}

const helperSocketEnv = "WORKLOADAPI_HELPER_CONNECT_FD"

// TestHelperConnect is not a test: run as a child process by
// TestCallerExitsDuringAttestation, it connects the socket it inherited as
// fd 3 to the path in the environment, says so, and exits when its stdin
// closes.
func TestHelperConnect(t *testing.T) {
	path := os.Getenv(helperSocketEnv)
	if path == "" {
		return
	}
	if err := syscall.Connect(3, &syscall.SockaddrUnix{Name: path}); err != nil {
		fmt.Println("connect:", err)
		os.Exit(1)
	}
	fmt.Println("connected")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

// exitingCaller is a child process that connected a socket this process
// holds too: the Workload API sees the child as the caller.
type exitingCaller struct {
	cmd   *exec.Cmd
	stdin interface{ Close() error }
	conn  net.Conn
	once  sync.Once
}

func connectFromChild(t *testing.T, sock string) *exitingCaller {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "caller-socket")
	defer f.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperConnect$")
	cmd.Env = append(os.Environ(), helperSocketEnv+"="+sock)
	cmd.ExtraFiles = []*os.File{f}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &exitingCaller{cmd: cmd, stdin: stdin}
	t.Cleanup(func() { c.exit() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "connected" {
		t.Fatalf("helper: %q %v", line, err)
	}
	if c.conn, err = net.FileConn(f); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.conn.Close() })
	return c
}

// exit makes the child exit and reaps it, so its PID names no process.
func (c *exitingCaller) exit() {
	c.once.Do(func() {
		c.stdin.Close()
		_ = c.cmd.Wait()
	})
}

// client returns a Workload API client whose one connection is the child's.
func (c *exitingCaller) client(t *testing.T) workload.SpiffeWorkloadAPIClient {
	t.Helper()
	var used sync.Once
	cc, err := grpc.NewClient("passthrough:///child",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
			var conn net.Conn
			used.Do(func() { conn = c.conn })
			if conn == nil {
				return nil, errors.New("the child's connection was already used")
			}
			return conn, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return workload.NewSpiffeWorkloadAPIClient(cc)
}

// exitDuringAttestation attests the caller with the real Unix attestor
// (while it is alive, so the selectors are genuinely its own) and then
// makes it exit before the Workload API answers.
type exitDuringAttestation struct {
	caller *exitingCaller
	pids   chan int32
}

func (a exitDuringAttestation) Attest(ctx context.Context, pid int32) ([]*types.Selector, error) {
	sels, err := unix.New().Attest(ctx, pid)
	a.pids <- pid
	a.caller.exit()
	return sels, err
}

// TestCallerExitsDuringAttestation: the process that connected exits
// between connect and the end of attestation. The selectors describe a
// process that is gone (whose PID may already name another one), so the
// Workload API must refuse instead of serving the SVID they match.
func TestCallerExitsDuringAttestation(t *testing.T) {
	att := &exitDuringAttestation{pids: make(chan int32, 4)}
	e := startWith(t, func(c *workloadapi.Config) { c.Attestor = att }, newEntry("e1", "/web", mySelector()))
	att.caller = connectFromChild(t, e.sock)
	ctx := withHeader(testContext(t))

	stream, err := att.caller.client(t).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err == nil {
		t.Fatalf("served %d SVIDs (%s) to a caller that exited during attestation", len(resp.Svids), resp.Svids[0].SpiffeId)
	}
	if c := status.Code(err); c != codes.Unauthenticated && c != codes.PermissionDenied {
		t.Fatalf("got %v (%v), want Unauthenticated or PermissionDenied", c, err)
	}
	select {
	case pid := <-att.pids:
		if int(pid) != att.caller.cmd.Process.Pid {
			t.Fatalf("attested pid %d, want the child's %d", pid, att.caller.cmd.Process.Pid)
		}
	default:
		t.Fatal("the attestor never ran: the refusal came from elsewhere")
	}
}
