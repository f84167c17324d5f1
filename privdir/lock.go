package privdir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the name of the lock file in a locked data directory.
const LockFile = "signet.lock"

// ErrLocked is matched (errors.Is) when another process holds the lock.
var ErrLocked = errors.New("privdir: data directory in use")

// LockedError says which process holds a data directory.
type LockedError struct {
	Dir string
	// PID is the holder's process id as it wrote it, 0 if unknown.
	PID int
}

func (e *LockedError) Error() string {
	who := "another signet process"
	if e.PID > 0 {
		who = fmt.Sprintf("another signet process (pid %d)", e.PID)
	}
	return fmt.Sprintf("privdir: data directory %s is in use by %s: stop it, or give this one another --data-dir", e.Dir, who)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Lock is an exclusive lock on a data directory.
type Lock struct{ f *os.File }

// LockDir takes an exclusive, non-blocking flock on dir/LockFile (dir must
// pass CheckDir) and records the process id in it. It fails at once with a
// *LockedError when another process holds it. The kernel releases the lock
// when the process exits, however it exits.
func LockDir(dir string) (*Lock, error) {
	if err := CheckDir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("privdir: open lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := io.ReadAll(io.LimitReader(f, 32))
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			return nil, &LockedError{Dir: dir, PID: pid}
		}
		return nil, fmt.Errorf("privdir: lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock. The file stays (removing it would let two
// processes lock different files of the same name).
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
