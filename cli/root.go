// Package cli implements the signet command line: `server run`, `agent run`,
// `quickstart`, the admin commands that talk to a server's admin socket,
// and the workload-side `fetch` commands that talk to an agent's Workload
// API.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/signet-id/signet/privdir"
	"github.com/spf13/cobra"
)

// defaults returns the default data directories and sockets for the user
// running the command (privdir.DefaultLayout: /var/lib/signet and
// /run/signet for root, per-user directories otherwise).
func defaults() privdir.Layout { return privdir.DefaultLayout(os.Geteuid(), os.Getenv) }

// Main runs the command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return mainIO(ctx, args, os.Stdin, stdout, stderr)
}

// mainIO is Main with stdin given (`entry create --data -` reads it).
func mainIO(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := NewRootCommand()
	root.SetArgs(spireArgs(root, args))
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "signet: %v\n", err)
			return 2
		}
		fmt.Fprintf(stderr, "signet: %v\n", err)
		return 1
	}
	return 0
}

// usageError marks errors in how a command was called (exit code 2).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// NewRootCommand returns the signet command tree.
func NewRootCommand() *cobra.Command {
	bi := readBuildInfo()
	root := &cobra.Command{
		Use:           "signet",
		Short:         "Signet: SPIFFE workload identity and secrets authority",
		Version:       bi.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate(bi.String())
	root.SetFlagErrorFunc(spireFlagError)
	agent := newAgentCommand()
	agent.AddCommand(agentAdminCommands()...)
	root.AddCommand(
		newServerCommand(),
		agent,
		newQuickstartCommand(),
		newVerifyCommand(),
		auditCommand(),
		caCommand(),
		secretCommand(),
		newVersionCommand(),
		newManCommand(),
		newK8sCommand(),
	)
	addAdminCommands(root)
	addWorkloadCommands(root)
	finishTree(root)
	return root
}
