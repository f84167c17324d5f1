package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
)

// `server validate` and `agent validate` refuse bad profiling and memory
// settings with an error naming the setting, and accept good ones.
func TestValidateProfilingAndMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	conf := func(side, body string) string {
		p := filepath.Join(dir, side+".conf")
		src := fmt.Sprintf("server {\n  trust_domain = \"example.org\"\n  data_dir = %q\n%s\n}\n", filepath.Join(dir, "data"), body)
		if side == "agent" {
			src = fmt.Sprintf("agent {\n  trust_domain = \"example.org\"\n  server_address = \"127.0.0.1\"\n  insecure_bootstrap = true\n  join_token = \"x\"\n  data_dir = %q\n%s\n}\n", filepath.Join(dir, "agent"), body)
		}
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, body string
		flags      []string
		want       string // "" valid
	}{
		{"loopback", `profiling_address = "127.0.0.1:6060"`, nil, ""},
		{"remote opted in", "profiling_address = \"0.0.0.0:6060\"\n  profiling_allow_remote = true", nil, ""},
		{"remote refused", `profiling_address = "0.0.0.0:6060"`, nil, "profiling_allow_remote"},
		{"remote flag refused", "", []string{"--profiling-address", ":6060"}, "--profiling-address"},
		{"remote flag opted in", "", []string{"--profiling-address", ":6060", "--profiling-allow-remote"}, ""},
		{"no port", `profiling_address = "localhost"`, nil, "profiling_address \"localhost\": want host:port"},
		{"memory", `memory_limit = "512MiB"`, nil, ""},
		{"memory bytes", `memory_limit = 536870912`, nil, ""},
		{"memory bad unit", `memory_limit = "512 parsecs"`, nil, "memory_limit: invalid size"},
		{"memory zero", `memory_limit = "0MiB"`, nil, "memory_limit: invalid size"},
		{"memory negative", `memory_limit = "-1GiB"`, nil, "memory_limit: invalid size"},
	}
	for _, side := range []string{"server", "agent"} {
		for _, tt := range tests {
			t.Run(side+"/"+tt.name, func(t *testing.T) {
				args := append([]string{side, "validate", "--config", conf(side, tt.body)}, tt.flags...)
				code, out, errOut := run(t, args...)
				if tt.want == "" {
					if code != 0 || out != "configuration is valid\n" {
						t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
					}
					return
				}
				if code == 0 || !strings.Contains(errOut, tt.want) {
					t.Fatalf("exit %d, stderr %q lacks %q", code, errOut, tt.want)
				}
			})
		}
	}
}

// `server run` with profiling_address serves /debug/pprof/ there and
// applies memory_limit; TestServerRunHealthAndTelemetry checks that
// without it no listener serves pprof.
func TestServerRunProfiling(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	prof := freePort(t)
	conf := filepath.Join(dir, "server.conf")
	src := fmt.Sprintf(`server {
  trust_domain      = "example.org"
  bind_address      = "127.0.0.1"
  bind_port         = 0
  data_dir          = %q
  socket_path       = "%s/api.sock"
  profiling_address = "127.0.0.1:%d"
  memory_limit      = "768MiB"
}
`, filepath.Join(dir, "data"), sockDir, prof)
	if err := os.WriteFile(conf, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() { done <- mainIO(ctx, []string{"server", "run", "-config", conf}, nil, &out, &errOut) }()
	var body string
	// Wait for the server to serve (a stop during start-up exits 1).
	for i := 0; i < 600 && (body == "" || !strings.Contains(errOut.String(), "agent_address=")); i++ {
		select {
		case code := <-done:
			t.Fatalf("server run exited %d: %s", code, errOut.String())
		case <-time.After(50 * time.Millisecond):
		}
		if body != "" {
			continue
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", prof))
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			body = string(b)
		}
	}
	if !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/ never answered with the profile index: %q", body)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("server run exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"serving profiling", "memory limit set", "memory_limit_bytes=805306368"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, errOut.String())
		}
	}
	if _, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", prof)); err == nil {
		t.Error("profiling still answers after the server stopped")
	}
}

// syncBuffer is a bytes.Buffer safe for the daemon's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
