package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// spireProfiling folds SPIRE's profiling_enabled/profiling_port into
// profiling_address (localhost:<port>, as SPIRE binds) and warns about
// profiling_freq and profiling_names, which Signet does not implement.
func spireProfiling(addr string, enabled bool, port, freq int, names []string, warnings *[]string) (string, error) {
	if freq != 0 || len(names) > 0 {
		*warnings = append(*warnings, "profiling_freq and profiling_names are ignored: Signet serves profiles on profiling_address (go tool pprof http://<address>/debug/pprof/heap) and writes no profile files")
	}
	if port != 0 && !enabled {
		*warnings = append(*warnings, "profiling_port is ignored without profiling_enabled = true")
	}
	if !enabled {
		return addr, nil
	}
	if addr != "" {
		return "", errors.New("set profiling_address or SPIRE's profiling_enabled/profiling_port, not both")
	}
	if port <= 0 || port > 65535 {
		return "", fmt.Errorf("profiling_enabled needs profiling_port, a TCP port (got %d)", port)
	}
	return net.JoinHostPort("localhost", strconv.Itoa(port)), nil
}
