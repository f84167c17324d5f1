//go:build linux

package peercred

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
)

func serverHandshake(cfg config, c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, nil, fmt.Errorf("peercred: connection is %T, not a Unix socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("peercred: %w", err)
	}
	var (
		cred           *unix.Ucred
		credErr, fdErr error
		pidfd          = -1
	)
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr == nil {
			// A pidfd for exactly the process that called connect()
			// (Linux 6.5+); see the pidfd_open fallback below.
			pidfd, fdErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("peercred: %w", err)
	}
	if credErr != nil {
		return nil, nil, fmt.Errorf("peercred: read SO_PEERCRED: %w", credErr)
	}
	if cred.Pid <= 0 {
		// The peer is in a PID namespace we cannot see into.
		return nil, nil, errors.New("peercred: peer process is not visible (pid 0)")
	}
	if fdErr != nil || pidfd < 0 {
		pidfd, err = unix.PidfdOpen(int(cred.Pid), 0)
		if err != nil {
			pidfd = -1
		}
	}
	start, err := readStartTime(cfg.procRoot, cred.Pid)
	if err != nil {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		return nil, nil, fmt.Errorf("%w: %w", ErrCallerGone, err)
	}
	w := &watcher{pid: cred.Pid, procRoot: cfg.procRoot, pidfd: pidfd, start: start}
	if pidfd >= 0 {
		// The process may have exited (and its PID been reused) between
		// connect() and the start time read above.
		if err := w.verify(); err != nil {
			w.close()
			return nil, nil, err
		}
	}
	ai := AuthInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity},
		PID:            cred.Pid,
		UID:            cred.Uid,
		GID:            cred.Gid,
		w:              w,
	}
	return &conn{Conn: c, w: w}, ai, nil
}

// watcher holds a handle on the peer process for the connection's lifetime.
type watcher struct {
	pid      int32
	procRoot string
	start    string

	mu     sync.Mutex
	pidfd  int // -1 when pidfds are unavailable
	closed bool
}

func (w *watcher) verify() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("%w: connection closed", ErrCallerGone)
	}
	if w.pidfd >= 0 {
		// Signal 0 only checks for existence. EPERM (another user's
		// process, agent not root) still means it exists.
		err := unix.PidfdSendSignal(w.pidfd, 0, nil, 0)
		if err != nil && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("%w: %w", ErrCallerGone, err)
		}
	}
	start, err := readStartTime(w.procRoot, w.pid)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCallerGone, err)
	}
	if start != w.start {
		return fmt.Errorf("%w: pid %d now has start time %s, caller had %s", ErrCallerGone, w.pid, start, w.start)
	}
	return nil
}

func (w *watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	if w.pidfd >= 0 {
		unix.Close(w.pidfd)
		w.pidfd = -1
	}
}

// readStartTime returns field 22 (starttime) of /proc/<pid>/stat, counting
// fields after the parenthesized comm, which may contain spaces and ')'.
func readStartTime(procRoot string, pid int32) (string, error) {
	path := filepath.Join(procRoot, strconv.FormatInt(int64(pid), 10), "stat")
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", fmt.Errorf("parse %s: no comm field", path)
	}
	fields := strings.Fields(string(b[i+1:]))
	const idx = 22 - 3 // fields[0] is field 3
	if len(fields) <= idx {
		return "", fmt.Errorf("parse %s: too few fields", path)
	}
	return fields[idx], nil
}
