//go:build !linux

package unix

import "io/fs"

// fileKey identifies one version of one file for the digest cache.
type fileKey struct {
	path  string
	size  int64
	mtime int64 // nanoseconds
}

func keyOf(path string, fi fs.FileInfo) fileKey {
	return fileKey{path: path, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}
