package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Telemetry is SPIRE's `telemetry` block. Signet exports Prometheus
// metrics only; the other sinks are refused.
type Telemetry struct {
	// Prometheus serves /metrics over HTTP (same as the flag
	// --metrics-address host:port, which overrides it).
	Prometheus *Prometheus `hcl:"Prometheus,block"`
	// InMem is SPIRE's deprecated in-memory sink; accepted and ignored.
	InMem  *InMem   `hcl:"InMem,block"`
	Remain hcl.Body `hcl:",remain"`
}

// Prometheus is the telemetry block's `Prometheus` block.
type Prometheus struct {
	// Host is the address /metrics listens on (default localhost).
	Host string `hcl:"host,optional"`
	// Port is the TCP port /metrics listens on. Required.
	Port int `hcl:"port"`
}

// InMem is the telemetry block's `InMem` block (ignored).
type InMem struct {
	// Enabled is read and ignored.
	Enabled *bool `hcl:"enabled,optional"`
}

// MetricsAddress returns the Prometheus host:port, or "" without one.
func (t *Telemetry) MetricsAddress() string {
	if t == nil || t.Prometheus == nil {
		return ""
	}
	host := strings.Trim(t.Prometheus.Host, "[]")
	if host == "" {
		host = "localhost"
	}
	return net.JoinHostPort(host, strconv.Itoa(t.Prometheus.Port))
}

func (t *Telemetry) check() error {
	if t == nil {
		return nil
	}
	if t.Remain != nil {
		attrs, _ := t.Remain.JustAttributes()
		for name, a := range attrs {
			if name == "Prometheus" {
				return fmt.Errorf("%s: telemetry: write Prometheus as a block: Prometheus { host = \"localhost\" port = 9988 }", a.Range.String())
			}
			return fmt.Errorf("%s: telemetry: %s is not supported: Signet exports Prometheus metrics only (telemetry { Prometheus { port = 9988 } })", a.Range.String(), name)
		}
	}
	if p := t.Prometheus; p != nil {
		if p.Port <= 0 || p.Port > 65535 {
			return fmt.Errorf("telemetry: Prometheus port %d is not a TCP port", p.Port)
		}
		if err := hostOnly("telemetry: Prometheus host", p.Host, "port"); err != nil {
			return err
		}
	}
	return nil
}

// HealthChecks is SPIRE's `health_checks` block: an HTTP listener that
// answers /live (200 while the process runs) and /ready (200 once the
// daemon serves, 500 before, as SPIRE).
type HealthChecks struct {
	// ListenerEnabled turns the listener on (default false).
	ListenerEnabled bool `hcl:"listener_enabled,optional"`
	// BindAddress is the host the listener binds (default localhost).
	BindAddress string `hcl:"bind_address,optional"`
	// BindPort is the listener's TCP port (default 80, as SPIRE's).
	BindPort string `hcl:"bind_port,optional"`
	// LivePath is the liveness path (default /live).
	LivePath string `hcl:"live_path,optional"`
	// ReadyPath is the readiness path (default /ready).
	ReadyPath string `hcl:"ready_path,optional"`
}

// Address returns the listener's host:port with SPIRE's defaults.
func (h *HealthChecks) Address() string {
	host := strings.Trim(h.BindAddress, "[]")
	if host == "" {
		host = "localhost"
	}
	port := h.BindPort
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(host, port)
}

// Paths returns the live and ready paths with SPIRE's defaults.
func (h *HealthChecks) Paths() (live, ready string) {
	live, ready = h.LivePath, h.ReadyPath
	if live == "" {
		live = "/live"
	}
	if ready == "" {
		ready = "/ready"
	}
	return live, ready
}

func (h *HealthChecks) check() error {
	if h == nil {
		return nil
	}
	if err := hostOnly("health_checks: bind_address", h.BindAddress, "bind_port"); err != nil {
		return err
	}
	if h.BindPort != "" {
		if n, err := strconv.Atoi(h.BindPort); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("health_checks: bind_port %q is not a TCP port", h.BindPort)
		}
	}
	live, ready := h.Paths()
	for _, p := range []string{live, ready} {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("health_checks: path %q must start with /", p)
		}
	}
	if live == ready {
		return fmt.Errorf("health_checks: live_path and ready_path are both %q", live)
	}
	return nil
}

// hostOnly refuses a host that carries a port (SPIRE splits them: the
// port goes in portKey). IPv6 literals, bracketed or not, are hosts.
func hostOnly(what, host, portKey string) error {
	if host == "" || !strings.Contains(host, ":") {
		return nil
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		return fmt.Errorf("%s %q is a host; put the port in %s (%s = %q, %s = %s)", what, host, portKey, lastWord(what), h, portKey, p)
	}
	if net.ParseIP(strings.Trim(host, "[]")) == nil {
		return fmt.Errorf("%s %q is not a host name or IP address", what, host)
	}
	return nil
}

func lastWord(s string) string {
	if i := strings.LastIndexByte(s, ' '); i >= 0 {
		return s[i+1:]
	}
	return s
}
