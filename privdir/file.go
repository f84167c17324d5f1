package privdir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// maxStateFile bounds what ReadFile reads.
const maxStateFile = 256 << 20

// ReadFile reads a private state file: path's directory must pass
// CheckDir, and the file must be a regular file (not a symlink) owned by
// the running user with no permission bits for group or others (0600 or
// tighter). A missing file returns an error matching fs.ErrNotExist.
func ReadFile(path string) ([]byte, error) {
	if err := CheckDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, &UnsafeError{Path: path, Reason: "is a symlink", Fix: "remove it; signet writes this file itself"}
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("privdir: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, &UnsafeError{Path: path, Reason: "not a regular file", Fix: "remove it"}
	}
	uid := os.Geteuid()
	if owner := ownerOf(fi); owner != uid {
		return nil, &UnsafeError{Path: path, Reason: fmt.Sprintf("owned by uid %d, not by uid %d that runs signet", owner, uid),
			Fix: "remove it if you did not put it there; otherwise chown it"}
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, &UnsafeError{Path: path, Reason: fmt.Sprintf("mode %04o is looser than 0600", fi.Mode().Perm()),
			Fix: fmt.Sprintf("check it was not replaced, then `chmod 0600 %s`", path)}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
	if err != nil {
		return nil, fmt.Errorf("privdir: read %s: %w", path, err)
	}
	if len(data) > maxStateFile {
		return nil, fmt.Errorf("privdir: %s is larger than %d bytes", path, maxStateFile)
	}
	return data, nil
}

// WriteFile replaces path atomically with data and mode perm: it checks
// path's directory with CheckDir, writes a new temporary file there
// (random name, O_EXCL|O_NOFOLLOW, so nothing planted is followed), syncs
// it and renames it over path (rename replaces a symlink at path, never
// its target).
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := CheckDir(dir); err != nil {
		return err
	}
	f, err := createTemp(dir, filepath.Base(path))
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("privdir: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("privdir: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("privdir: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("privdir: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("privdir: write %s: %w", path, err)
	}
	return nil
}

func createTemp(dir, base string) (*os.File, error) {
	var b [8]byte
	for range 16 {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("privdir: %w", err)
		}
		name := filepath.Join(dir, "."+base+".tmp-"+hex.EncodeToString(b[:]))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("privdir: create temporary file in %s: %w", dir, err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("privdir: create temporary file in %s: names keep colliding", dir)
}
