package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func newHealthcheckCommand() *cobra.Command {
	var (
		af      adminFlags
		shallow bool
		verbose bool
		timeout time.Duration
	)
	c := &cobra.Command{
		Use:   "healthcheck",
		Short: "Check that the server is up and serving",
		Long: `Healthcheck asks the server's gRPC health service over the admin socket.
Unless --shallow is given it also fetches the trust bundle, which proves the
store and the CA answer. Exit code 0 means healthy.`,
		Args: noArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if timeout <= 0 {
				return usageErrorf("--timeout must be positive, e.g. 5s")
			}
			return nil
		},
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			out := cmd.OutOrStdout()
			if verbose {
				fmt.Fprintf(out, "Checking server health at %s...\n", c.socket)
			}
			resp, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				return fmt.Errorf("server is unhealthy: %w", c.rpcErr("health check", err))
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("server is unhealthy: it reports %s (check its logs)", resp.GetStatus())
			}
			if !shallow {
				if verbose {
					fmt.Fprintln(out, "Health service reports SERVING; fetching the trust bundle...")
				}
				b, err := c.bundle.GetBundle(ctx, &bundlev1.GetBundleRequest{})
				if err != nil {
					return fmt.Errorf("server is unhealthy: %w", c.rpcErr("fetching the trust bundle", err))
				}
				if len(b.GetX509Authorities()) == 0 {
					return fmt.Errorf("server is unhealthy: %w", errors.New("its trust bundle has no X.509 authorities (is the CA initialised? check the server logs)"))
				}
			}
			fmt.Fprintln(out, "Server is healthy.")
			return nil
		}),
	}
	af.register(c.Flags(), false)
	c.Flags().BoolVar(&shallow, "shallow", false, "only ask the health service; do not check the CA and store")
	c.Flags().BoolVar(&verbose, "verbose", false, "print each step")
	c.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the server")
	c.SetGlobalNormalizationFunc(spireNormalize)
	c.SetFlagErrorFunc(spireFlagError)
	return c
}
