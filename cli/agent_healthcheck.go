package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/agent/workloadapi"
)

// newAgentHealthcheckCommand is `signet agent healthcheck`, spire-agent
// healthcheck's counterpart: it asks grpc.health.v1 on the Workload API
// socket and exits 0 only if the agent is healthy.
func newAgentHealthcheckCommand() *cobra.Command {
	var (
		w       workloadFlags
		shallow bool
		verbose bool
	)
	c := &cobra.Command{
		Use:   "healthcheck",
		Short: "Check that the agent is attested and serves the Workload API",
		Long: `Healthcheck asks the agent's gRPC health service on the Workload API socket
(as spire-agent healthcheck does; spire-agent's single-dash flags such as
-socketPath are accepted). The agent is healthy when it holds an unexpired
agent SVID and a trust bundle. Unless --shallow is given it also calls the
Workload API itself (FetchX509Bundles; "no identity" counts as an answer).
Exit code 0 means healthy; otherwise the reason is printed and it exits 1.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if w.timeout <= 0 {
				return usageErrorf("--timeout must be positive, e.g. 5s")
			}
			ep, err := w.endpoint(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), w.timeout)
			defer cancel()
			out := cmd.OutOrStdout()
			if verbose {
				fmt.Fprintf(out, "Checking agent health at %s...\n", ep.display)
			}
			if err := agentHealth(ctx, ep, shallow, verbose, out); err != nil {
				return fmt.Errorf("agent is unhealthy: %w", err)
			}
			fmt.Fprintln(out, "Agent is healthy.")
			return nil
		},
	}
	fs := c.Flags()
	fs.StringVar(&w.socketPath, "socket-path", defaultWorkloadSocket(),
		"the Workload API socket: a path or a unix:// URI (default: $SPIFFE_ENDPOINT_SOCKET if set)")
	fs.DurationVar(&w.timeout, "timeout", 5*time.Second, "how long to wait for the agent")
	fs.BoolVar(&shallow, "shallow", false, "only ask the health service; do not call the Workload API")
	fs.BoolVar(&verbose, "verbose", false, "print each step and the agent's identity")
	return c
}

func agentHealth(ctx context.Context, ep endpoint, shallow, verbose bool, out io.Writer) error {
	target := ep.addr
	if hostport, ok := strings.CutPrefix(target, "tcp://"); ok {
		target = "passthrough:///" + hostport // gRPC has no tcp scheme
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("cannot reach the agent at %s: %w", ep.display, err)
	}
	defer conn.Close()
	var trailer metadata.MD
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
	if err != nil {
		return fmt.Errorf("cannot reach the agent's health service at %s: %s (is `signet agent run` running? use --socket-path)",
			ep.display, status.Convert(err).Message())
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		if r := trailer.Get(agent.HealthReasonKey); len(r) > 0 {
			return errors.New(r[0])
		}
		return fmt.Errorf("it reports %s (check its logs)", resp.GetStatus())
	}
	if verbose {
		fmt.Fprintf(out, "Health service reports SERVING: agent %s, SVID valid until %s\n",
			strings.Join(trailer.Get(agent.HealthAgentIDKey), ","), strings.Join(trailer.Get(agent.HealthExpiryKey), ","))
	}
	if shallow {
		return nil
	}
	if verbose {
		fmt.Fprintln(out, "Calling the Workload API (FetchX509Bundles)...")
	}
	sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, workloadapi.SecurityHeader, "true"))
	defer cancel()
	stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509Bundles(sctx, &workload.X509BundlesRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	switch status.Code(err) {
	case codes.OK, codes.PermissionDenied:
		// No identity for this process is still an answer from the
		// Workload API, as spire-agent's deep check counts it.
		return nil
	}
	return fmt.Errorf("the Workload API did not answer: %s", status.Convert(err).Message())
}
