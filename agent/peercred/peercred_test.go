//go:build linux

package peercred

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// serve starts a gRPC server with peercred credentials on a fresh Unix
// socket; every RPC's AuthInfo is sent to the returned channel.
func serve(t *testing.T, opts ...Option) (string, <-chan AuthInfo) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	infos := make(chan AuthInfo, 16)
	srv := grpc.NewServer(
		grpc.Creds(NewCredentials(opts...)),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			ai, ok := FromContext(ctx)
			if !ok {
				return nil, errors.New("no peer credentials")
			}
			infos <- ai
			return h(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return sock, infos
}

// check makes one RPC on a new connection, which stays open until the test
// ends (the server forgets the process when the connection closes).
func check(t *testing.T, sock string) {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	if _, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestPeerCredentialsOfSelf(t *testing.T) {
	sock, infos := serve(t)
	check(t, sock)
	ai := <-infos
	if ai.PID != int32(os.Getpid()) || ai.UID != uint32(os.Geteuid()) || ai.GID != uint32(os.Getegid()) {
		t.Errorf("got pid/uid/gid %d/%d/%d, want %d/%d/%d", ai.PID, ai.UID, ai.GID, os.Getpid(), os.Geteuid(), os.Getegid())
	}
	if ai.AuthType() != AuthType {
		t.Errorf("AuthType %q", ai.AuthType())
	}
	if err := ai.Verify(); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

// TestVerifyDetectsPIDReuse serves with a fake /proc whose entry for this
// process changes its start time after the handshake, as if the caller had
// exited and its PID been reused.
func TestVerifyDetectsPIDReuse(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeStat := func(start int) {
		line := fmt.Sprintf("%d (a b)) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", os.Getpid(), start)
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeStat(100)
	status := fmt.Sprintf("Name:\tx\nUid:\t%[1]d\t%[1]d\t%[1]d\t%[1]d\nGid:\t%[2]d\t%[2]d\t%[2]d\t%[2]d\n", os.Geteuid(), os.Getegid())
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc/self/exe", filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}

	sock, infos := serve(t, WithProcRoot(root))
	check(t, sock)
	ai := <-infos
	if err := ai.Verify(); err != nil {
		t.Fatalf("Verify before reuse: %v", err)
	}
	writeStat(200)
	if err := ai.Verify(); !errors.Is(err, ErrCallerGone) {
		t.Fatalf("Verify after reuse: got %v, want ErrCallerGone", err)
	}
}

// TestVerifyDetectsExitedCaller connects from a child process, which is then
// killed and reaped: Verify must report it gone.
func TestVerifyDetectsExitedCaller(t *testing.T) {
	sock, infos := serve(t)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperClient$")
	cmd.Env = append(os.Environ(), "PEERCRED_HELPER_SOCKET="+sock)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ai := <-infos
	if ai.PID != int32(cmd.Process.Pid) {
		t.Fatalf("pid %d, want child %d", ai.PID, cmd.Process.Pid)
	}
	if err := ai.Verify(); err != nil {
		t.Fatalf("Verify while child alive: %v", err)
	}
	stdin.Close()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if err := ai.Verify(); !errors.Is(err, ErrCallerGone) {
		t.Fatalf("Verify after child exit: got %v, want ErrCallerGone", err)
	}
}

// TestHelperClient is the child process of TestVerifyDetectsExitedCaller.
func TestHelperClient(t *testing.T) {
	sock := os.Getenv("PEERCRED_HELPER_SOCKET")
	if sock == "" {
		t.Skip("helper process only")
	}
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	// Hold the connection open until the parent closes stdin or kills us.
	buf := make([]byte, 1)
	_, _ = os.Stdin.Read(buf)
}

func TestClientHandshakeUnsupported(t *testing.T) {
	c := NewCredentials()
	if _, _, err := c.ClientHandshake(context.Background(), "x", nil); err == nil {
		t.Fatal("client handshake succeeded")
	}
	if c.Info().SecurityProtocol != AuthType {
		t.Fatal("wrong protocol info")
	}
}
