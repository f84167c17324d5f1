package config_test

import (
	"strings"
	"testing"

	"github.com/signet-id/signet/config"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"", 0, ""},
		{"1048576", 1 << 20, ""},
		{"512MiB", 512 << 20, ""},
		{"2GiB", 2 << 30, ""},
		{"1.5GiB", 3 << 29, ""},
		{"64 KiB", 64 << 10, ""},
		{"500MB", 500e6, ""},
		{"1TB", 1e12, ""},
		{"10B", 10, ""},
		{"0", 0, "at least 1 byte"},
		{"-1GiB", 0, "at least 1 byte"},
		{"0.5B", 0, "at least 1 byte"},
		{"512mb", 0, "invalid size"},
		{"lots", 0, "invalid size"},
		{"NaNGiB", 0, "invalid size"},
		{"1e30", 0, "too large"},
	}
	for _, tt := range tests {
		got, err := config.ParseSize(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: %d, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestRuntimeSettings(t *testing.T) {
	s, err := config.LoadServer(write(t, `server {
  profiling_address      = "127.0.0.1:6060"
  profiling_allow_remote = true
  memory_limit           = "512MiB"
}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Server.ProfilingAddress != "127.0.0.1:6060" || !s.Server.ProfilingAllowRemote || s.Server.MemoryLimit != "512MiB" {
		t.Fatalf("decoded %+v", s.Server)
	}
	a, err := config.LoadAgent(write(t, `agent {
  profiling_address = "[::1]:6061"
  memory_limit      = 268435456
}`))
	if err != nil {
		t.Fatal(err)
	}
	if a.Agent.ProfilingAddress != "[::1]:6061" || a.Agent.MemoryLimit != "268435456" {
		t.Fatalf("decoded %+v", a.Agent)
	}
	if _, err := config.LoadServer(write(t, `server { memory_limit = "half" }`)); err == nil || !strings.Contains(err.Error(), "server: memory_limit: invalid size \"half\"") {
		t.Errorf("server: %v", err)
	}
	if _, err := config.LoadAgent(write(t, `agent { memory_limit = "0" }`)); err == nil || !strings.Contains(err.Error(), "agent: memory_limit: invalid size") {
		t.Errorf("agent: %v", err)
	}
}

func TestSPIREProfilingSettings(t *testing.T) {
	s, err := config.LoadServer(write(t, `server {
  profiling_enabled = true
  profiling_port    = 6060
  profiling_freq    = 60
  profiling_names   = ["heap"]
}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Server.ProfilingAddress != "localhost:6060" || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "profiling_freq and profiling_names are ignored") {
		t.Fatalf("address %q, warnings %q", s.Server.ProfilingAddress, s.Warnings)
	}
	a, err := config.LoadAgent(write(t, "agent {\n  profiling_enabled = true\n  profiling_port = 6061\n}"))
	if err != nil || a.Agent.ProfilingAddress != "localhost:6061" {
		t.Fatalf("agent: %v %+v", err, a)
	}
	for src, want := range map[string]string{
		"server {\n  profiling_enabled = true\n}":                                                              "server: profiling_enabled needs profiling_port",
		"server {\n  profiling_enabled = true\n  profiling_port = 70000\n}":                                    "profiling_port, a TCP port (got 70000)",
		"server {\n  profiling_enabled = true\n  profiling_port = 1\n  profiling_address = \"127.0.0.1:2\"\n}": "not both",
	} {
		if _, err := config.LoadServer(write(t, src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", src, err, want)
		}
	}
}
