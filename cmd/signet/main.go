// Command signet is the one Signet binary: server, agent, admin CLI and
// workload-side tools. It only parses and wires; see package cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/signet-id/signet/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
