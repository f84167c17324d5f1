// Command signet is the one Signet binary: server, agent, admin CLI and
// workload-side tools. It only parses and wires; see package cli.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/signet-id/signet/cli"
)

// stopGrace bounds how long the process may take to stop after SIGINT or
// SIGTERM (a graceful server stop takes up to about 10 s); a second signal
// exits at once.
const stopGrace = 30 * time.Second

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		cancel()
		select {
		case <-sigs:
			fmt.Fprintf(os.Stderr, "signet: second signal; exiting now\n")
		case <-time.After(stopGrace):
			fmt.Fprintf(os.Stderr, "signet: still running %v after %v; exiting now\n", stopGrace, sig)
		}
		code := 1
		if s, ok := sig.(syscall.Signal); ok {
			code = 128 + int(s)
		}
		os.Exit(code)
	}()
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}
