package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
)

// addAdminCommands adds the admin commands that talk to a server's admin
// socket: entry, token, bundle, healthcheck. (The agent admin commands
// come from agentAdminCommands.)
func addAdminCommands(root *cobra.Command) {
	root.AddCommand(
		newEntryCommand(),
		newTokenCommand(),
		newBundleCommand(),
		newFederationCommand(),
		newHealthcheckCommand(),
	)
}

func newTokenCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "token",
		Short: "Manage join tokens",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	c.AddCommand(newTokenGenerateCommand())
	c.SetGlobalNormalizationFunc(spireNormalize)
	c.SetFlagErrorFunc(spireFlagError)
	return c
}

// tokenFlags are the flags of `token generate`.
type tokenFlags struct {
	admin    adminFlags
	spiffeID string
	ttl      ttlValue
	value    string
}

func (f *tokenFlags) request() (*agentv1.CreateJoinTokenRequest, error) {
	if f.ttl.seconds <= 0 {
		return nil, usageErrorf("--ttl must be positive, e.g. --ttl 10m or --ttl 600")
	}
	req := &agentv1.CreateJoinTokenRequest{Ttl: f.ttl.seconds, Token: f.value}
	if f.spiffeID != "" {
		id, err := parseID("spiffe-id", f.spiffeID)
		if err != nil {
			return nil, err
		}
		req.AgentId = id
	}
	return req, nil
}

func newTokenGenerateCommand() *cobra.Command {
	f := &tokenFlags{ttl: ttlValue{seconds: 600}}
	var req *agentv1.CreateJoinTokenRequest
	c := &cobra.Command{
		Use:   "generate",
		Short: "Generate a single-use join token for `signet agent run --join-token`",
		Example: `  signet token generate --spiffe-id spiffe://example.org/node1 --ttl 10m
  signet agent run --join-token "$(signet token generate -o json | jq -r .value)"`,
		Args: noArgs,
		PreRunE: func(*cobra.Command, []string) (err error) {
			req, err = f.request()
			return err
		},
		RunE: withAdmin(&f.admin, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			tok, err := c.agent.CreateJoinToken(ctx, req)
			if err != nil {
				return c.rpcErr("generating join token", err)
			}
			if f.admin.output.json() {
				return writeProtoJSON(cmd.OutOrStdout(), tok)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Token: %s\n", tok.GetValue())
			if f.spiffeID == "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "Warning: Missing SPIFFE ID. The agent gets only its join_token ID; add --spiffe-id to alias it.")
			}
			return nil
		}),
	}
	f.admin.register(c.Flags(), true)
	c.Flags().StringVar(&f.spiffeID, "spiffe-id", "", "an extra SPIFFE ID for the agent that uses the token (creates a node entry aliasing it)")
	c.Flags().Var(&f.ttl, "ttl", "how long the token is valid, as a duration (10m) or seconds (600)")
	c.Flags().StringVar(&f.value, "token", "", "a token value to use instead of a generated one (must be unique)")
	return c
}
