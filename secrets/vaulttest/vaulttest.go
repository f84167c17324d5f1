// Package vaulttest starts and stops a real Vault dev server for tests, on
// a free loopback port, from the binary that scripts/install-vault.sh builds
// (conformance/tools/vault). The binary is $SIGNET_VAULT_BIN if set, else
// the cached build that `scripts/install-vault.sh --cached` reports. A
// missing binary fails the test when CI=true and skips it otherwise.
//
// Vault is BUSL-1.1 licensed and used here only to test.
package vaulttest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/signet-id/signet/conformance/tooltest"

	vault "github.com/hashicorp/vault/api"
)

// RootToken is the dev server's root token.
const RootToken = "root"

// Server is a running Vault dev server.
type Server struct {
	// Addr is the server's URL (http://127.0.0.1:PORT).
	Addr string
	bin  string
	port int
	home string

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *tooltest.Buffer
	exit chan struct{}
}

// Binary returns the Vault binary's path: $SIGNET_VAULT_BIN or
// scripts/install-vault.sh's cached build; it fails t under CI=true and
// skips it otherwise when there is none (a cold build takes ~20 minutes).
func Binary(t testing.TB) string {
	t.Helper()
	return tooltest.Tool{Name: "vault", Env: "SIGNET_VAULT_BIN", Script: "install-vault.sh"}.Path(t)
}

// Start starts a dev server and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: "http://127.0.0.1:" + strconv.Itoa(port), bin: bin, port: port, home: t.TempDir()}
	t.Cleanup(s.Stop)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("vaulttest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("vaulttest: already running")
	}
	cmd := exec.Command(s.bin, "server", "-dev",
		"-dev-root-token-id", RootToken,
		"-dev-listen-address", "127.0.0.1:"+strconv.Itoa(s.port),
		"-dev-no-store-token")
	// A private HOME: the dev server would write ~/.vault-token.
	cmd.Env = []string{"HOME=" + s.home, "PATH=" + os.Getenv("PATH")}
	s.out = &tooltest.Buffer{}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("vaulttest: start %s: %w", s.bin, err)
	}
	s.cmd = cmd
	exit := make(chan struct{})
	s.exit = exit
	go func() { _ = cmd.Wait(); close(exit) }()

	hc := &http.Client{Timeout: 2 * time.Second}
	for range 600 { // up to ~60s on a loaded machine
		select {
		case <-exit:
			return fmt.Errorf("vaulttest: vault exited during startup:\n%s", s.out.String())
		default:
		}
		resp, err := hc.Get(s.Addr + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("vaulttest: vault did not become ready on %s:\n%s", s.Addr, s.out.String())
}

// Stop stops the server (all its data is lost: it is a dev server).
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exit := s.cmd, s.exit
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exit:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exit
	}
}

// Restart starts a fresh dev server on the same address after Stop. The
// root token is the same; everything else (mounts' data, leases,
// AppRoles) is new.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// Output returns the server's log output so far.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// Client returns a client with the root token.
func (s *Server) Client(t testing.TB) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = s.Addr
	cfg.MaxRetries = 0
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(RootToken)
	return c
}

// PutKV writes data as a new version of the KV v2 secret at mount/path and
// returns the version.
func (s *Server) PutKV(t testing.TB, mount, path string, data map[string]any) int {
	t.Helper()
	sec, err := s.Client(t).KVv2(mount).Put(context.Background(), path, data)
	if err != nil {
		t.Fatalf("vaulttest: put %s/%s: %v", mount, path, err)
	}
	return sec.VersionMetadata.Version
}

// Write writes to a Vault API path with the root token.
func (s *Server) Write(t testing.TB, path string, data map[string]any) *vault.Secret {
	t.Helper()
	sec, err := s.Client(t).Logical().Write(path, data)
	if err != nil {
		t.Fatalf("vaulttest: write %s: %v", path, err)
	}
	return sec
}
