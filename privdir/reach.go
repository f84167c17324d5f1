package privdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrNotReachable is matched (errors.Is) by the errors of OthersReach and
// Reach: a directory on the way to a socket stops the caller.
var ErrNotReachable = errors.New("privdir: socket not reachable")

// ReachError names the directory that stops the way to a socket, its
// mode, and what to change.
type ReachError struct {
	Socket string
	Dir    string
	Mode   fs.FileMode
	Who    string // "other users" or "uid N"
}

func (e *ReachError) Error() string {
	return fmt.Sprintf("directory %s (mode %04o) is not searchable by %s, so %s cannot be reached: "+
		"put the Workload API socket in a directory every workload can search (0755), apart from the agent's 0700 data directory "+
		"(the default is /run/signet/agent/public/api.sock; set --socket-path or socket_path), or `chmod o+x %s`",
		e.Dir, e.Mode.Perm(), e.Who, e.Socket, e.Dir)
}

// Is makes errors.Is(err, ErrNotReachable) true.
func (e *ReachError) Is(target error) bool { return target == ErrNotReachable }

// OthersReach checks that a user who is neither the owner nor in the group
// of socket's directories can search every one of them (the agent's view:
// workloads of every uid must reach its socket). It returns a *ReachError
// naming the first directory that stops them.
func OthersReach(socket string) error {
	return walkDirs(socket, "other users", func(dir string, fi fs.FileInfo) bool {
		return fi.Mode().Perm()&0o001 != 0
	})
}

// Reach checks that the running process can search every directory on
// the way to socket (the client's view), and returns a *ReachError naming
// the first one it cannot.
func Reach(socket string) error {
	who := fmt.Sprintf("uid %d", os.Getuid())
	return walkDirs(socket, who, func(dir string, _ fs.FileInfo) bool {
		return syscall.Access(dir, 0o1) == nil
	})
}

// walkDirs calls ok on each directory from / down to socket's parent and
// returns a *ReachError for the first refused one. Directories it cannot
// stat are skipped (the one above them is the one that stops).
func walkDirs(socket, who string, ok func(string, fs.FileInfo) bool) error {
	abs, err := filepath.Abs(socket)
	if err != nil {
		return fmt.Errorf("privdir: %w", err)
	}
	var dirs []string
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		fi, err := os.Stat(dirs[i])
		if err != nil {
			return nil
		}
		if !ok(dirs[i], fi) {
			return &ReachError{Socket: abs, Dir: dirs[i], Mode: fi.Mode(), Who: who}
		}
	}
	return nil
}
