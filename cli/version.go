package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is the release version, set at build time with
//
//	go build -ldflags "-X github.com/signet-id/signet/cli.version=v1.2.3" ./cmd/signet
//
// Empty, the module version from the build info is shown (a pseudo-version
// or "(devel)" for a local build).
var version string

// buildInfo is what `signet version` and `signet --version` print.
type buildInfo struct {
	Version, Commit, CommitTime, GoVersion string
	Modified                               bool
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if b.Version == "" {
			b.Version = "unknown"
		}
		return b
	}
	if b.Version == "" {
		b.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.CommitTime = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	return b
}

func (b buildInfo) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "signet %s\n", b.Version)
	commit := b.Commit
	if commit == "" {
		commit = "unknown (built without VCS information)"
	}
	if b.CommitTime != "" {
		commit += " (" + b.CommitTime + ")"
	}
	if b.Modified {
		commit += ", modified"
	}
	fmt.Fprintf(&s, "commit: %s\ngo: %s\n", commit, b.GoVersion)
	return s.String()
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit and the Go version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprint(cmd.OutOrStdout(), readBuildInfo().String())
			return nil
		},
	}
}
