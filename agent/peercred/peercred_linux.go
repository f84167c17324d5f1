//go:build linux

package peercred

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/signet-id/signet/internal/procfs"
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
	if fdErr != nil {
		pidfd = -1
	}
	if cred.Pid <= 0 {
		// The peer is in a PID namespace we cannot see into.
		closeFD(pidfd)
		return nil, nil, errors.New("peercred: peer process is not visible (pid 0)")
	}
	ai := AuthInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity},
		PID:            cred.Pid,
		UID:            cred.Uid,
		GID:            cred.Gid,
	}
	var release func()
	if cfg.admit != nil {
		rel, err := cfg.admit(cred.Uid)
		if err != nil {
			// Over a limit: hold no process handle, answer every RPC with
			// the refusal, and close the connection after a grace period
			// (or at once when the caller already has many refused ones).
			closeFD(pidfd)
			var ce *RefusedError
			if errors.As(err, &ce) && ce.CloseNow {
				if rel != nil {
					rel()
				}
				return nil, nil, err
			}
			ai.Refused = err
			rc := &conn{Conn: c, release: rel}
			rc.timer = time.AfterFunc(refusedGrace, func() { rc.Close() })
			return rc, ai, nil
		}
		release = rel
	}
	w, err := newWatcher(cfg.procRoot, cfg.pidfds, cred, pidfd)
	if err != nil {
		if release != nil {
			release()
		}
		return nil, nil, err
	}
	ai.w = w
	return &conn{Conn: c, w: w, release: release}, ai, nil
}

// refusedGrace is how long a connection refused by the admission hook stays
// open so that its first RPC can be answered with the refusal.
const refusedGrace = 5 * time.Second

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

func newWatcher(procRoot string, pidfds *pidfdTable, cred *unix.Ucred, pidfd int) (*watcher, error) {
	if pidfd < 0 {
		var err error
		pidfd, err = unix.PidfdOpen(int(cred.Pid), 0)
		if err != nil {
			pidfd = -1
		}
	}
	start, err := readStartTime(procRoot, cred.Pid)
	if err != nil {
		closeFD(pidfd)
		return nil, fmt.Errorf("%w: %w", ErrCallerGone, err)
	}
	key := procKey{pid: cred.Pid, start: start}
	if pidfd >= 0 {
		pidfd = pidfds.share(key, pidfd)
	}
	w := &watcher{
		pid: cred.Pid, uid: cred.Uid, gid: cred.Gid,
		procRoot: procRoot, pidfd: pidfd, start: start,
		pidfds: pidfds, key: key,
	}
	w.exe, w.exeErr = exeID(w.dir())
	if pidfd >= 0 {
		// The process may have exited (and its PID been reused) between
		// connect() and the start time read above.
		if err := w.alive(); err != nil {
			w.close()
			return nil, err
		}
	}
	return w, nil
}

// fileID identifies a file (the target of /proc/<pid>/exe).
type fileID struct{ dev, ino uint64 }

func exeID(dir string) (fileID, error) {
	fi, err := os.Stat(filepath.Join(dir, "exe"))
	if err != nil {
		return fileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, errors.New("no stat_t")
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// watcher holds a handle on the peer process for the connection's lifetime
// and what it was when it connected.
type watcher struct {
	pid      int32
	uid, gid uint32 // SO_PEERCRED: effective IDs at connect()
	procRoot string
	start    string
	exe      fileID // executable at the handshake
	exeErr   error  // why exe could not be read then, if it could not

	pidfds *pidfdTable
	key    procKey

	mu     sync.Mutex
	pidfd  int // shared through pidfds; -1 when pidfds are unavailable
	closed bool
}

// procKey names one process: a pid and its start time.
type procKey struct {
	pid   int32
	start string
}

// pidfdTable shares one pidfd among the connections of one process, so
// that a process with many connections costs the agent one descriptor per
// connection (its socket) plus one.
type pidfdTable struct {
	mu sync.Mutex
	m  map[procKey]*sharedPidfd
}

type sharedPidfd struct {
	fd   int
	refs int
}

func newPidfdTable() *pidfdTable { return &pidfdTable{m: make(map[procKey]*sharedPidfd)} }

// share returns the table's pidfd for k, closing fd if there is one
// already, else adopting fd. Two connections with the same pid and start
// time come from one process; should the pid have been reused within one
// clock tick, the older pidfd names an exited process and Verify fails,
// refusing rather than mixing up the two.
func (t *pidfdTable) share(k procKey, fd int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.m[k]; ok {
		unix.Close(fd)
		s.refs++
		return s.fd
	}
	t.m[k] = &sharedPidfd{fd: fd, refs: 1}
	return fd
}

func (t *pidfdTable) release(k procKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[k]
	if !ok {
		return
	}
	if s.refs--; s.refs == 0 {
		unix.Close(s.fd)
		delete(t.m, k)
	}
}

func (w *watcher) dir() string {
	return filepath.Join(w.procRoot, strconv.FormatInt(int64(w.pid), 10))
}

func (w *watcher) verify() error {
	if err := w.alive(); err != nil {
		return err
	}
	return w.unchanged()
}

// alive checks that the pid still names the process that connected.
func (w *watcher) alive() error {
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

// unchanged checks that the process still has the credentials the kernel
// recorded at connect() and still runs the executable it ran at the
// handshake. A setuid or setgid exec changes the effective (and saved)
// IDs and makes the process non-dumpable, which hands /proc/<pid> to
// root; any exec replaces the executable.
func (w *watcher) unchanged() error {
	dir := w.dir()
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCallerGone, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Uid != w.uid || st.Gid != w.gid) {
		return fmt.Errorf("%w: %s is owned by %d:%d but the caller connected as %d:%d (setuid/setgid exec or non-dumpable process)",
			ErrCallerChanged, dir, st.Uid, st.Gid, w.uid, w.gid)
	}
	uids, gids, err := readStatusIDs(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCallerGone, err)
	}
	for i, name := range []string{"real", "effective", "saved"} {
		if uids[i] != w.uid || gids[i] != w.gid {
			return fmt.Errorf("%w: %s uid/gid of pid %d are %d/%d but the caller connected as %d/%d",
				ErrCallerChanged, name, w.pid, uids[i], gids[i], w.uid, w.gid)
		}
	}
	exe, err := exeID(dir)
	switch {
	case err != nil && w.exeErr == nil:
		return fmt.Errorf("%w: executable of pid %d no longer readable: %w", ErrCallerChanged, w.pid, err)
	case err == nil && w.exeErr != nil:
		return fmt.Errorf("%w: executable of pid %d was not readable when it connected: %w", ErrCallerChanged, w.pid, w.exeErr)
	case err == nil && exe != w.exe:
		return fmt.Errorf("%w: pid %d executed another program since it connected", ErrCallerChanged, w.pid)
	}
	// The process may have exited between the checks above.
	return w.alive()
}

func (w *watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	if w.pidfd >= 0 {
		w.pidfds.release(w.key)
		w.pidfd = -1
	}
}

// readStatusIDs returns the real, effective and saved uids and gids from
// <dir>/status.
func readStatusIDs(dir string) (uids, gids [3]uint32, err error) {
	st, err := procfs.ReadStatus(dir)
	if err != nil {
		return uids, gids, err
	}
	if len(st.UIDs) < 3 || len(st.GIDs) < 3 {
		return uids, gids, fmt.Errorf("parse %s/status: short Uid or Gid line", dir)
	}
	copy(uids[:], st.UIDs)
	copy(gids[:], st.GIDs)
	return uids, gids, nil
}

// readStartTime returns field 22 (starttime) of /proc/<pid>/stat.
func readStartTime(procRoot string, pid int32) (string, error) {
	st, err := procfs.ReadStat(filepath.Join(procRoot, strconv.FormatInt(int64(pid), 10)))
	if err != nil {
		return "", err
	}
	return strconv.FormatUint(st.StartTime, 10), nil
}
