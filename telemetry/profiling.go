package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// ErrProfilingRemote is returned for a profiling address that is not on
// loopback without the explicit opt-in (profiling_allow_remote).
var ErrProfilingRemote = errors.New("telemetry: profiling_address must be on loopback (127.0.0.1, [::1] or localhost) unless profiling_allow_remote is set: the profiles expose memory contents and the endpoints have no authentication")

// CheckProfilingAddress checks a profiling address (the setting
// profiling_address, flag --profiling-address): host:port with a TCP
// port, on loopback unless allowRemote. An empty host (":6060") listens on
// every interface and so counts as remote. Empty addr is valid (off).
func CheckProfilingAddress(addr string, allowRemote bool) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("telemetry: profiling_address %q: want host:port, e.g. 127.0.0.1:6060", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("telemetry: profiling_address %q: port %q is not a TCP port", addr, port)
	}
	if allowRemote || isLoopback(host) {
		return nil
	}
	return fmt.Errorf("%w (got %q)", ErrProfilingRemote, addr)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ProfilingHandler serves net/http/pprof's endpoints under /debug/pprof/.
func ProfilingHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// ServeProfiling checks addr (CheckProfilingAddress) and serves
// ProfilingHandler on it until stop is called. It returns the address
// listened on. Nothing listens when addr is empty: it returns a nil
// address and a no-op stop.
func ServeProfiling(addr string, allowRemote bool, log *slog.Logger) (net.Addr, func(), error) {
	if addr == "" {
		return nil, func() {}, nil
	}
	if err := CheckProfilingAddress(addr, allowRemote); err != nil {
		return nil, nil, err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: profiling_address %s: %w", addr, err)
	}
	// No write timeout: /debug/pprof/profile and /trace stream for
	// ?seconds= (30 by default).
	hs := &http.Server{Handler: ProfilingHandler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	go func() { _ = hs.Serve(lis) }()
	if isLoopback(hostOf(lis.Addr().String())) {
		log.Info("serving profiling (net/http/pprof)", "address", lis.Addr().String())
	} else {
		log.Warn("serving profiling (net/http/pprof) beyond loopback: anyone who reaches it can read profiles", "address", lis.Addr().String())
	}
	return lis.Addr(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
	}, nil
}

func hostOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// ApplyMemoryLimit sets the Go runtime's soft memory limit to limit bytes
// (runtime/debug.SetMemoryLimit; the setting memory_limit) and logs it
// with the limit it replaces (GOMEMLIMIT's, or none). limit ≤ 0 leaves
// the runtime's limit as it is.
func ApplyMemoryLimit(limit int64, log *slog.Logger) {
	if limit <= 0 {
		return
	}
	prev := debug.SetMemoryLimit(limit)
	attrs := []any{"memory_limit_bytes", limit}
	if prev != int64(^uint64(0)>>1) {
		attrs = append(attrs, "replaced_bytes", prev)
	}
	log.Info("memory limit set", attrs...)
}
