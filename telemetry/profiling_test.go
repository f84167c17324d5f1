package telemetry

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"testing"
)

func TestCheckProfilingAddress(t *testing.T) {
	tests := []struct {
		addr       string
		remote     bool
		want       string // "" accepts
		wantRemote bool
	}{
		{"", false, "", false},
		{"127.0.0.1:6060", false, "", false},
		{"[::1]:6060", false, "", false},
		{"localhost:0", false, "", false},
		{"127.0.0.2:6060", false, "", false},
		{"0.0.0.0:6060", false, "profiling_allow_remote", true},
		{":6060", false, "profiling_allow_remote", true},
		{"10.1.2.3:6060", false, "profiling_allow_remote", true},
		{"example.com:6060", false, "profiling_allow_remote", true},
		{"0.0.0.0:6060", true, "", false},
		{"127.0.0.1", false, "want host:port", false},
		{"127.0.0.1:http", false, "not a TCP port", false},
		{"127.0.0.1:70000", false, "not a TCP port", false},
	}
	for _, tt := range tests {
		err := CheckProfilingAddress(tt.addr, tt.remote)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q remote=%v: %v", tt.addr, tt.remote, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "profiling_address")):
			t.Errorf("%q remote=%v: error %v, want one naming profiling_address and %q", tt.addr, tt.remote, err, tt.want)
		case errors.Is(err, ErrProfilingRemote) != tt.wantRemote:
			t.Errorf("%q: errors.Is(ErrProfilingRemote) = %v", tt.addr, !tt.wantRemote)
		}
	}
}

func TestServeProfiling(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	// Unset: nothing is opened.
	addr, stop, err := ServeProfiling("", false, log)
	if err != nil || addr != nil {
		t.Fatalf("unset: addr %v, err %v", addr, err)
	}
	stop()
	if logs.Len() != 0 {
		t.Errorf("unset logged %q", logs.String())
	}

	// Refused before listening.
	if _, _, err := ServeProfiling("0.0.0.0:0", false, log); !errors.Is(err, ErrProfilingRemote) {
		t.Fatalf("0.0.0.0:0: %v", err)
	}

	addr, stop, err = ServeProfiling("127.0.0.1:0", false, log)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	for path, want := range map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/heap?debug=1":      "heap profile",
		"/debug/pprof/goroutine?debug=1": "goroutine profile",
		"/debug/pprof/cmdline":           "",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
	if !strings.Contains(logs.String(), "serving profiling") {
		t.Errorf("log: %q", logs.String())
	}
	stop()
	if _, err := http.Get(base + "/debug/pprof/"); err == nil {
		t.Error("profiling still answers after stop")
	}

	// A busy port: the error names the setting.
	busy, stopBusy, err := ServeProfiling("127.0.0.1:0", false, log)
	if err != nil {
		t.Fatal(err)
	}
	defer stopBusy()
	if _, _, err := ServeProfiling(busy.String(), false, log); err == nil || !strings.Contains(err.Error(), "profiling_address") {
		t.Errorf("busy port: %v", err)
	}
}

func TestApplyMemoryLimit(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	ApplyMemoryLimit(0, log)
	if got := debug.SetMemoryLimit(-1); got != orig || logs.Len() != 0 {
		t.Fatalf("0 changed the limit to %d or logged %q", got, logs.String())
	}
	ApplyMemoryLimit(512<<20, log)
	if got := debug.SetMemoryLimit(-1); got != 512<<20 {
		t.Fatalf("limit %d, want %d", got, 512<<20)
	}
	if !strings.Contains(logs.String(), "memory_limit_bytes=536870912") {
		t.Errorf("log: %q", logs.String())
	}
}
