package privdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrUnsafe is matched (errors.Is) by every refusal of a path that another
// local user could control.
var ErrUnsafe = errors.New("privdir: unsafe path")

// UnsafeError names a path that failed a check, why, and what to do.
type UnsafeError struct {
	Path   string
	Reason string
	Fix    string
}

func (e *UnsafeError) Error() string {
	return fmt.Sprintf("privdir: refusing %s: %s (%s)", e.Path, e.Reason, e.Fix)
}

// Is makes errors.Is(err, ErrUnsafe) true.
func (e *UnsafeError) Is(target error) bool { return target == ErrUnsafe }

// maxSymlinks bounds symlink resolution while checking a path.
const maxSymlinks = 32

// EnsureDir creates dir with mode (and missing parents with 0755) and then
// checks it with CheckDir. An existing dir keeps its mode; it must pass the
// same checks.
func EnsureDir(dir string, mode fs.FileMode) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("privdir: %w", err)
	}
	if err := mkdirs(abs, mode); err != nil {
		return err
	}
	return CheckDir(abs)
}

// mkdirs creates the missing components of abs: parents 0755, the last
// one mode (chmod'ed after creation so the umask does not matter).
func mkdirs(abs string, mode fs.FileMode) error {
	var missing []string
	for p := abs; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("privdir: %w", err)
		}
		missing = append(missing, p)
		if p == filepath.Dir(p) {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		m := fs.FileMode(0o755)
		if i == 0 {
			m = mode
		}
		if err := os.Mkdir(missing[i], m); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue // raced with another creator; CheckDir judges it
			}
			return fmt.Errorf("privdir: create %s: %w", missing[i], err)
		}
		if err := os.Chmod(missing[i], m); err != nil {
			return fmt.Errorf("privdir: chmod %s: %w", missing[i], err)
		}
	}
	return nil
}

// CheckDir checks that dir is a directory owned by the running user and
// not writable by group or others, and that no other user can replace it:
// every directory above it is owned by root or the running user and is
// writable only by its owner unless it is sticky (like /tmp); symlinks on
// the way must be owned by root or the running user.
func CheckDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("privdir: %w", err)
	}
	uid := os.Geteuid()
	real, err := walk(abs, uid, 0)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(real)
	if err != nil {
		return fmt.Errorf("privdir: %w", err)
	}
	if !fi.IsDir() {
		return &UnsafeError{Path: dir, Reason: "not a directory", Fix: "remove it or choose another path"}
	}
	return checkOwnDir(dir, fi, uid)
}

// checkOwnDir applies the rules for the directory Signet keeps its files in.
func checkOwnDir(name string, fi fs.FileInfo, uid int) error {
	if owner := ownerOf(fi); owner != uid {
		return &UnsafeError{Path: name, Reason: fmt.Sprintf("owned by uid %d, not by uid %d that runs signet", owner, uid),
			Fix: fmt.Sprintf("remove it, or if you trust its contents `chown -R %d %s && chmod 0700 %s`", uid, name, name)}
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return &UnsafeError{Path: name, Reason: fmt.Sprintf("mode %04o is writable by group or others", fi.Mode().Perm()),
			Fix: fmt.Sprintf("check its contents, then `chmod 0700 %s` (0755 for a public socket directory)", name)}
	}
	return nil
}

// walk resolves abs component by component, checking each directory it
// passes through, and returns the resolved path of abs.
func walk(abs string, uid, depth int) (string, error) {
	if depth > maxSymlinks {
		return "", &UnsafeError{Path: abs, Reason: "too many symlinks", Fix: "use a path without symlink loops"}
	}
	cur := "/"
	parts := strings.Split(strings.TrimPrefix(filepath.Clean(abs), "/"), "/")
	for i, part := range parts {
		if part == "" {
			continue
		}
		if err := checkParent(cur, uid); err != nil {
			return "", err
		}
		next := filepath.Join(cur, part)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", fmt.Errorf("privdir: %w", err)
		}
		if fi.Mode().Type() == fs.ModeSymlink {
			if owner := ownerOf(fi); owner != 0 && owner != uid {
				return "", &UnsafeError{Path: next, Reason: fmt.Sprintf("symlink owned by uid %d", owner),
					Fix: "remove it or use the real path"}
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", fmt.Errorf("privdir: %w", err)
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			rest := filepath.Join(append([]string{target}, parts[i+1:]...)...)
			return walk(rest, uid, depth+1)
		}
		cur = next
	}
	return cur, nil
}

// checkParent checks a directory above the one Signet uses.
func checkParent(dir string, uid int) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("privdir: %w", err)
	}
	if !fi.IsDir() {
		return &UnsafeError{Path: dir, Reason: "not a directory", Fix: "choose another path"}
	}
	if owner := ownerOf(fi); owner != 0 && owner != uid {
		return &UnsafeError{Path: dir, Reason: fmt.Sprintf("parent directory owned by uid %d, who could replace what is below it", owner),
			Fix: "choose a path whose parents belong to root or to you"}
	}
	if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0 {
		return &UnsafeError{Path: dir, Reason: fmt.Sprintf("parent directory mode %04o is writable by group or others without the sticky bit", fi.Mode().Perm()),
			Fix: fmt.Sprintf("`chmod go-w %s` or choose another path", dir)}
	}
	return nil
}

func ownerOf(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
