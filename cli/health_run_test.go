package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// `server run` with a SPIRE-style config serves health_checks (/ready
// turns 200 once the server serves) and Prometheus from the telemetry
// block, and logs the ignored plugin blocks.
func TestServerRunHealthAndTelemetry(t *testing.T) {
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	health, metrics := freePort(t), freePort(t)
	conf := filepath.Join(dir, "server.conf")
	src := fmt.Sprintf(`server {
  trust_domain = "example.org"
  bind_address = "::1"
  bind_port    = 0
  data_dir     = "$D/data"
  socket_path  = "%s/api.sock"
}
plugins {
  KeyManager "disk" {
    plugin_data { keys_path = "/x" }
  }
}
health_checks {
  listener_enabled = true
  bind_address     = "127.0.0.1"
  bind_port        = "%d"
}
telemetry {
  Prometheus {
    host = "127.0.0.1"
    port = %d
  }
}
`, sockDir, health, metrics)
	if err := os.WriteFile(conf, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("D", dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- mainIO(ctx, []string{"server", "run", "-config", conf, "-expandEnv"}, nil, &out, &errOut)
	}()

	get := func(port int, path string) (int, string, error) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	ready := false
	for i := 0; i < 600 && !ready; i++ {
		select {
		case code := <-done:
			t.Fatalf("server run exited %d: %s", code, errOut.String())
		case <-time.After(50 * time.Millisecond):
		}
		code, _, err := get(health, "/ready")
		ready = err == nil && code == 200
	}
	if !ready {
		t.Fatal("/ready never answered 200")
	}
	if code, body, err := get(health, "/live"); err != nil || code != 200 || !strings.Contains(body, `"live":true`) {
		t.Errorf("/live: %d %q %v", code, body, err)
	}
	if code, body, err := get(metrics, "/metrics"); err != nil || code != 200 || !strings.Contains(body, "signet_server_renewals_unscheduled_total") {
		t.Errorf("/metrics: %d %v", code, err)
	}
	// Profiling is off unless asked for: not on the other listeners
	// either (net/http/pprof registers on http.DefaultServeMux).
	for _, port := range []int{health, metrics} {
		if code, _, err := get(port, "/debug/pprof/"); err != nil || code != http.StatusNotFound {
			t.Errorf("port %d /debug/pprof/: %d %v, want 404", port, code, err)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("server run exit %d: %s", code, errOut.String())
	}
	if strings.Contains(errOut.String(), "profiling") {
		t.Errorf("profiling mentioned without profiling_address:\n%s", errOut.String())
	}
	for _, want := range []string{`configuration setting ignored`, `KeyManager \"disk\" is ignored`, "serving health checks", "agent_address=[::1]:"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, errOut.String())
		}
	}
}
