package cli

import (
	"github.com/spf13/pflag"

	"github.com/signet-id/signet/agent/workloadapi"
)

// addWorkloadLimitFlags registers the Workload API limit flags of
// `signet agent run` into l.
func addWorkloadLimitFlags(fl *pflag.FlagSet, l *workloadapi.Limits) {
	fl.IntVar(&l.MaxConnsPerUID, "workload-max-conns-per-uid", workloadapi.DefaultMaxConnsPerUID,
		"Workload API connections one local user (uid) may hold open; -1 for no limit")
	fl.IntVar(&l.MaxCallsPerUID, "workload-max-calls-per-uid", workloadapi.DefaultMaxCallsPerUID,
		"concurrent Workload API calls (streams and unary) of one local user; -1 for no limit")
	fl.IntVar(&l.MaxStreamsPerConn, "workload-max-streams-per-conn", workloadapi.DefaultMaxStreamsPerConn,
		"HTTP/2 concurrent streams per Workload API connection; -1 for no limit")
	fl.DurationVar(&l.IdleTimeout, "workload-idle-timeout", workloadapi.DefaultIdleTimeout,
		"close Workload API connections without a call in progress for this long; negative for never")
}
