package cli

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// finishTree applies the rules every command of the tree shares: a
// command that only groups others refuses an unknown subcommand with exit
// code 2 (instead of printing help and exiting 0), and every flag accepts
// spire-server's camelCase name (--spiffeID, and -spiffeID through
// spireArgs).
func finishTree(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() && !c.Runnable() {
			c.RunE = groupRun
			c.Args = cobra.ArbitraryArgs
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if root.Args == nil {
		root.RunE = groupRun
		root.Args = cobra.ArbitraryArgs
	}
	root.SetGlobalNormalizationFunc(spireNormalize)
}

// spireArgs rewrites spire-server's single-dash long flags (-spiffeID,
// -socketPath, -config) to two dashes when the command that args name has
// such a flag, so scripts written for spire-server and spire-agent run
// unchanged. Shorthands (-o), values and everything after "--" are left
// as they are; an unknown single-dash word is left for the flag error.
func spireArgs(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil {
		return args
	}
	lookup := func(name string) *pflag.Flag {
		n := string(spireNormalize(nil, name))
		if f := cmd.Flags().Lookup(n); f != nil {
			return f
		}
		return cmd.InheritedFlags().Lookup(n)
	}
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		out = append(out, a)
		if a == "--" {
			out = append(out, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		var f *pflag.Flag
		switch {
		case strings.HasPrefix(a, "--"):
			f = lookup(name)
		case len(name) == 1:
			f = cmd.Flags().ShorthandLookup(name)
			if f == nil {
				f = cmd.InheritedFlags().ShorthandLookup(name)
			}
		default:
			if f = lookup(name); f != nil {
				out[len(out)-1] = "-" + a
			}
		}
		// A flag that takes a value consumes the next argument, which
		// may itself start with a dash.
		if f != nil && !hasValue && f.NoOptDefVal == "" && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}
