package agent

import (
	"fmt"

	"github.com/signet-id/signet/privdir"
)

// lockDataDir creates (0700) and checks the data directory, then locks it
// so that a second agent on it exits at once with a message naming the
// first one.
func lockDataDir(dir string) (func(), error) {
	if err := privdir.EnsureDir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: data directory: %w", err)
	}
	l, err := privdir.LockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return func() { _ = l.Unlock() }, nil
}
