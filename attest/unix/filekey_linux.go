//go:build linux

package unix

import (
	"io/fs"
	"syscall"
)

// fileKey identifies one version of one file for the digest cache.
type fileKey struct {
	path         string
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

func keyOf(path string, fi fs.FileInfo) fileKey {
	k := fileKey{path: path, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.dev = uint64(st.Dev)
		k.ino = st.Ino
		k.ctime = st.Ctim.Nano()
	}
	return k
}
