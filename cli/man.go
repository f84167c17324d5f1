package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// newManCommand is `signet man --dir DIR`: one roff man page (section 1)
// per command, written from the command tree itself, so the pages always
// match the binary. Packagers run it at install time.
func newManCommand() *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:     "man",
		Short:   "Write a man page (section 1) for every command into --dir",
		Example: "  signet man --dir /usr/local/share/man/man1 && man signet-entry-create",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usageErrorf("--dir is required: the directory for the pages, e.g. --dir /usr/local/share/man/man1")
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("man: %w", err)
			}
			n := 0
			var walk func(c *cobra.Command) error
			walk = func(c *cobra.Command) error {
				if c.Hidden || c.Name() == "help" || strings.HasPrefix(c.Name(), "__") {
					return nil
				}
				name := strings.ReplaceAll(c.CommandPath(), " ", "-")
				if err := os.WriteFile(filepath.Join(dir, name+".1"), manPage(c), 0o644); err != nil {
					return fmt.Errorf("man: %w", err)
				}
				n++
				for _, sub := range c.Commands() {
					if err := walk(sub); err != nil {
						return err
					}
				}
				return nil
			}
			if err := walk(cmd.Root()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Wrote %d man pages to %s\n", n, dir)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "`DIR` to write the pages into (created if missing)")
	return c
}

// roff escapes text for a man page: backslashes, and a leading dot or
// quote that would read as a request.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'") {
			line = `\&` + line
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// roffWord is roff for text inside a line.
func roffWord(s string) string { return strings.TrimSuffix(roff(s), "\n") }

func manPage(c *cobra.Command) []byte {
	var b bytes.Buffer
	name := strings.ReplaceAll(c.CommandPath(), " ", "-")
	fmt.Fprintf(&b, ".TH %q 1 \"\" \"signet %s\" \"Signet Manual\"\n", strings.ToUpper(name), readBuildInfo().Version)
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s", roffWord(name), roff(c.Short))
	fmt.Fprintf(&b, ".SH SYNOPSIS\n.B %s", roff(c.UseLine()))
	desc := c.Long
	if desc == "" {
		desc = c.Short
	}
	fmt.Fprintf(&b, ".SH DESCRIPTION\n%s", roff(desc))
	flags := func(title string, fs *pflag.FlagSet) {
		if !fs.HasAvailableFlags() {
			return
		}
		fmt.Fprintf(&b, ".SH %s\n", title)
		fs.VisitAll(func(f *pflag.Flag) {
			if f.Hidden {
				return
			}
			value, usage := pflag.UnquoteUsage(f)
			head := "\\fB\\-\\-" + roffWord(f.Name) + "\\fR"
			if f.Shorthand != "" {
				head = "\\fB\\-" + f.Shorthand + "\\fR, " + head
			}
			if value != "" {
				head += " \\fI" + roffWord(value) + "\\fR"
			}
			fmt.Fprintf(&b, ".TP\n%s\n%s", head, roff(usage))
		})
	}
	flags("OPTIONS", c.NonInheritedFlags())
	flags("OPTIONS INHERITED FROM PARENT COMMANDS", c.InheritedFlags())
	if c.Example != "" {
		fmt.Fprintf(&b, ".SH EXAMPLES\n.nf\n%s.fi\n", roff(c.Example))
	}
	var see []string
	if c.HasParent() {
		see = append(see, strings.ReplaceAll(c.Parent().CommandPath(), " ", "-")+"(1)")
	}
	for _, sub := range c.Commands() {
		if !sub.Hidden && sub.Name() != "help" && !strings.HasPrefix(sub.Name(), "__") {
			see = append(see, strings.ReplaceAll(sub.CommandPath(), " ", "-")+"(1)")
		}
	}
	if len(see) > 0 {
		fmt.Fprintf(&b, ".SH SEE ALSO\n%s", roff(strings.Join(see, ", ")))
	}
	return b.Bytes()
}
