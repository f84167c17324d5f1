package cli

import (
	"fmt"

	"github.com/signet-id/signet/config"
	"github.com/signet-id/signet/telemetry"
	"github.com/spf13/pflag"
)

// runtimeFlags are the profiling and memory flags of `server run` and
// `agent run`.
type runtimeFlags struct {
	profilingAddress string
	profilingRemote  bool
}

func (f *runtimeFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.profilingAddress, "profiling-address", "", "serve net/http/pprof (/debug/pprof/) on this loopback host:port, e.g. 127.0.0.1:6060 (default off)")
	fl.BoolVar(&f.profilingRemote, "profiling-allow-remote", false, "allow a non-loopback --profiling-address (the endpoints have no authentication)")
}

// apply sets rs's profiling address (the flag overrides the file's
// profiling_address) and memory limit, and checks them.
func (f *runtimeFlags) apply(rs *runSettings, fileAddr string, fileRemote bool, fileMemory string) error {
	rs.profiling = pick(f.profilingAddress, fileAddr)
	rs.profilingRemote = f.profilingRemote || fileRemote
	if err := telemetry.CheckProfilingAddress(rs.profiling, rs.profilingRemote); err != nil {
		return usageError{fmt.Errorf("%w (--profiling-address or profiling_address)", err)}
	}
	n, err := config.ParseSize(fileMemory) // validated by Load*, again here
	if err != nil {
		return usageError{fmt.Errorf("memory_limit: %w", err)}
	}
	rs.memoryLimit = n
	return nil
}
