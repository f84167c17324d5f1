package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/signet-id/signet/config"
)

// JoinTokenEnv is the environment variable `agent run` reads a join token
// from; unlike --join-token it does not show in ps or /proc/<pid>/cmdline.
const JoinTokenEnv = "SIGNET_JOIN_TOKEN"

// maxJoinTokenFile bounds a join-token file.
const maxJoinTokenFile = 4096

// resolveJoinToken picks the agent's join token, first found wins:
// --join-token, --join-token-file, $SIGNET_JOIN_TOKEN, join_token_file and
// join_token in the agent block. Passing both flags is a usage error.
func (f *agentFlags) resolveJoinToken(file config.Agent) (string, error) {
	if f.joinToken != "" && f.joinTokenFile != "" {
		return "", usageError{errors.New("--join-token and --join-token-file are exclusive; prefer --join-token-file (or $" + JoinTokenEnv + "), which keeps the token out of ps")}
	}
	switch {
	case f.joinToken != "":
		return f.joinToken, nil
	case f.joinTokenFile != "":
		return readJoinTokenFile(f.joinTokenFile, "--join-token-file")
	case os.Getenv(JoinTokenEnv) != "":
		return strings.TrimSpace(os.Getenv(JoinTokenEnv)), nil
	case file.JoinTokenFile != "":
		return readJoinTokenFile(file.JoinTokenFile, "join_token_file")
	}
	return file.JoinToken, nil
}

// readJoinTokenFile reads a token file (surrounding white space removed).
func readJoinTokenFile(path, what string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", usageError{fmt.Errorf("%s: %w", what, err)}
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxJoinTokenFile+1))
	if err != nil {
		return "", usageError{fmt.Errorf("%s %s: %w", what, path, err)}
	}
	if len(data) > maxJoinTokenFile {
		return "", usageError{fmt.Errorf("%s %s is larger than %d bytes; it should hold only the token", what, path, maxJoinTokenFile)}
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", usageError{fmt.Errorf("%s %s is empty; write the token from `signet token generate` into it", what, path)}
	}
	return tok, nil
}

// warnJoinTokenFlag logs that a token given with --join-token is visible to
// every local user.
func warnJoinTokenFlag(log *slog.Logger, f *agentFlags) {
	if f.joinToken != "" {
		log.Warn("the join token on the command line (--join-token) is visible to every local user in ps and /proc/<pid>/cmdline; use --join-token-file or $" + JoinTokenEnv + " instead")
	}
}
