package privdir

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrSocketInUse is matched (errors.Is) when a live process answers on a
// socket path that Listen was asked to take over.
var ErrSocketInUse = errors.New("privdir: socket in use")

// probeTimeout bounds the connect that tells a live socket from a stale one.
const probeTimeout = 2 * time.Second

// ListenUnix listens on the Unix socket path with file mode perm. path's
// directory must pass CheckDir. An existing socket is removed only when
// nothing answers on it (connection refused); if a process answers, it
// fails with an error matching ErrSocketInUse that names the path. Any
// other file at path is refused.
func ListenUnix(path string, perm fs.FileMode) (net.Listener, error) {
	if err := CheckDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("privdir: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, perm); err != nil {
		l.Close()
		return nil, fmt.Errorf("privdir: chmod %s: %w", path, err)
	}
	return l, nil
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("privdir: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return &UnsafeError{Path: path, Reason: "exists and is not a socket", Fix: "remove it or choose another socket path"}
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: %s answers connections, so another process (a running signet?) is serving it: stop that process or choose another socket path", ErrSocketInUse, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("privdir: cannot tell whether %s is in use (%w): remove it by hand if nothing serves it", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("privdir: remove stale socket %s: %w", path, err)
	}
	return nil
}
