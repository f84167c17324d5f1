// Package unix is the Unix workload attestor: given the process ID of a
// workload connected to the agent's Workload API socket, it reads the
// process's credentials and executable from /proc and returns "unix"
// selectors with the same names and meanings as SPIRE's unix workload
// attestor (uid, user, gid, group, supplementary_gid, supplementary_group,
// path, sha256).
//
// Attestation is a snapshot: the process's start time, effective UID and
// GID and executable (device and inode) are read before and after
// everything else, and a change (the process exited and its PID was reused,
// it changed user, or it executed another program) fails attestation with
// ErrProcessChanged. The path and sha256 selectors are those of the file
// the process runs (its dev+inode is checked against the hashed file).
// Binding the result to the process that connected is the caller's job
// (the agent's peercred package).
package unix

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/signet-id/signet/internal/procfs"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// SelectorType is the type of every selector this attestor produces.
const SelectorType = "unix"

const (
	// DefaultSizeLimit bounds how many bytes of an executable are hashed
	// for the sha256 selector.
	DefaultSizeLimit int64 = 1 << 30
	// defaultHashCacheSize bounds the digest cache.
	defaultHashCacheSize = 1024
)

// ErrProcessChanged is returned when the process at the attested PID was not
// the same process (start time, effective UID/GID or executable differ) at
// the end of attestation as at its start.
var ErrProcessChanged = errors.New("unix: process changed during attestation")

// Attestor produces unix selectors for a process. It is safe for concurrent
// use.
type Attestor struct {
	procRoot     string
	lookupUser   func(uid string) (string, error)
	lookupGroup  func(gid string) (string, error)
	discoverPath bool
	sizeLimit    int64
	log          *slog.Logger

	mu        sync.Mutex
	hashes    map[fileKey]string
	hashOrder []fileKey // insertion order, for bounded eviction
	hashMax   int
}

// Option configures an Attestor.
type Option func(*Attestor)

// WithProcRoot sets the procfs mount point (default "/proc"), for tests or
// an agent running in a container with the host's /proc mounted elsewhere.
func WithProcRoot(dir string) Option {
	return func(a *Attestor) {
		if dir != "" {
			a.procRoot = dir
		}
	}
}

// WithUserLookup sets the function that maps a numeric UID to a user name.
// An error means "no name": the user selector is omitted.
func WithUserLookup(f func(uid string) (string, error)) Option {
	return func(a *Attestor) {
		if f != nil {
			a.lookupUser = f
		}
	}
}

// WithGroupLookup sets the function that maps a numeric GID to a group name.
// An error means "no name": the group selector is omitted.
func WithGroupLookup(f func(gid string) (string, error)) Option {
	return func(a *Attestor) {
		if f != nil {
			a.lookupGroup = f
		}
	}
}

// WithWorkloadPath enables or disables the path and sha256 selectors
// (enabled by default). Reading another user's /proc/<pid>/exe needs the
// agent to run as root or with CAP_SYS_PTRACE.
func WithWorkloadPath(enabled bool) Option {
	return func(a *Attestor) { a.discoverPath = enabled }
}

// WithSizeLimit bounds the size of executables that are hashed for the
// sha256 selector (default DefaultSizeLimit). Larger executables get no
// sha256 selector. A negative limit disables hashing.
func WithSizeLimit(n int64) Option {
	return func(a *Attestor) { a.sizeLimit = n }
}

// WithLogger sets the logger (default: discard). Nil keeps the default.
func WithLogger(l *slog.Logger) Option {
	return func(a *Attestor) {
		if l != nil {
			a.log = l
		}
	}
}

// New returns an Attestor.
func New(opts ...Option) *Attestor {
	a := &Attestor{
		procRoot:     "/proc",
		lookupUser:   lookupUser,
		lookupGroup:  lookupGroup,
		discoverPath: true,
		sizeLimit:    DefaultSizeLimit,
		log:          slog.New(slog.DiscardHandler),
		hashes:       make(map[fileKey]string),
		hashMax:      defaultHashCacheSize,
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

func lookupUser(uid string) (string, error) {
	u, err := user.LookupId(uid)
	if err != nil {
		return "", err
	}
	return u.Username, nil
}

func lookupGroup(gid string) (string, error) {
	g, err := user.LookupGroupId(gid)
	if err != nil {
		return "", err
	}
	return g.Name, nil
}

// Attest returns the unix selectors of the process pid.
//
// The uid and gid selectors use the effective IDs, as SPIRE does. Missing
// user or group names are omitted. When the executable cannot be read (for
// example the agent lacks permission) the path and sha256 selectors are
// omitted and a warning logged; since entries match on a subset of the
// workload's selectors, a missing selector can only deny, never grant.
func (a *Attestor) Attest(ctx context.Context, pid int32) ([]*types.Selector, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("unix: invalid pid %d", pid)
	}
	dir := filepath.Join(a.procRoot, strconv.FormatInt(int64(pid), 10))

	start, err := readStartTime(dir)
	if err != nil {
		return nil, err
	}
	var exe fs.FileInfo // nil when unreadable
	if a.discoverPath {
		exe, _ = os.Stat(filepath.Join(dir, "exe"))
	}
	st, err := readStatus(dir)
	if err != nil {
		return nil, err
	}

	var sel []*types.Selector
	add := func(kind, value string) {
		sel = append(sel, &types.Selector{Type: SelectorType, Value: kind + ":" + value})
	}

	add("uid", st.uid)
	if name, err := a.lookupUser(st.uid); err == nil && name != "" {
		add("user", name)
	}
	add("gid", st.gid)
	if name, err := a.lookupGroup(st.gid); err == nil && name != "" {
		add("group", name)
	}
	for _, g := range st.groups {
		add("supplementary_gid", g)
		if name, err := a.lookupGroup(g); err == nil && name != "" {
			add("supplementary_group", name)
		}
	}

	if a.discoverPath {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("unix: %w", err)
		}
		path, digest, err := a.executable(dir, exe)
		switch {
		case errors.Is(err, ErrProcessChanged):
			return nil, err
		case err != nil:
			a.log.WarnContext(ctx, "unix: cannot read workload executable; omitting path and sha256 selectors",
				slog.Int("pid", int(pid)), slog.Any("error", err))
		default:
			add("path", path)
			if digest != "" {
				add("sha256", digest)
			}
		}
	}

	// Re-check that the PID still names the same process with the same
	// effective UID, so that the selectors describe one process only.
	start2, err := readStartTime(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProcessChanged, err)
	}
	st2, err := readStatus(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProcessChanged, err)
	}
	if start2 != start {
		return nil, fmt.Errorf("%w: start time %s, was %s", ErrProcessChanged, start2, start)
	}
	if st2.uid != st.uid || st2.gid != st.gid {
		return nil, fmt.Errorf("%w: effective uid/gid %s/%s, was %s/%s", ErrProcessChanged, st2.uid, st2.gid, st.uid, st.gid)
	}
	if a.discoverPath && exe != nil {
		exe2, err := os.Stat(filepath.Join(dir, "exe"))
		if err != nil || !os.SameFile(exe, exe2) {
			return nil, fmt.Errorf("%w: executable replaced during attestation", ErrProcessChanged)
		}
	}
	return sel, nil
}

// executable returns the path of the process's executable and, unless
// hashing is disabled or the file is too large, its SHA-256 digest. exe is
// the executable stat'ed at the start of attestation (nil: unreadable); a
// different file fails with ErrProcessChanged.
func (a *Attestor) executable(dir string, exe fs.FileInfo) (path, digest string, err error) {
	exeLink := filepath.Join(dir, "exe")
	if exe == nil {
		return "", "", errors.New("unix: executable not readable")
	}
	path, err = os.Readlink(exeLink)
	if err != nil {
		return "", "", fmt.Errorf("unix: read executable path: %w", err)
	}
	if a.sizeLimit < 0 {
		return path, "", nil
	}

	// Open through /proc/<pid>/exe rather than the path: it names the
	// executable the process runs even if the path was replaced or the
	// process lives in another mount namespace.
	f, err := os.Open(exeLink)
	if err != nil {
		return "", "", fmt.Errorf("unix: open executable: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", "", fmt.Errorf("unix: stat executable: %w", err)
	}
	if !os.SameFile(fi, exe) {
		return "", "", fmt.Errorf("%w: executable replaced during attestation", ErrProcessChanged)
	}
	if fi.Size() > a.sizeLimit {
		a.log.Warn("unix: workload executable exceeds size limit; omitting sha256 selector",
			slog.String("path", path), slog.Int64("size", fi.Size()), slog.Int64("limit", a.sizeLimit))
		return path, "", nil
	}
	key := keyOf(path, fi)
	if d, ok := a.cachedHash(key); ok {
		return path, d, nil
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, a.sizeLimit+1))
	if err != nil {
		return "", "", fmt.Errorf("unix: hash executable: %w", err)
	}
	if n > a.sizeLimit {
		a.log.Warn("unix: workload executable grew beyond size limit; omitting sha256 selector",
			slog.String("path", path), slog.Int64("limit", a.sizeLimit))
		return path, "", nil
	}
	if n != fi.Size() {
		// The file changed while we read it; do not cache a digest that
		// may not match its key.
		return path, hex.EncodeToString(h.Sum(nil)), nil
	}
	digest = hex.EncodeToString(h.Sum(nil))
	a.storeHash(key, digest)
	return path, digest, nil
}

func (a *Attestor) cachedHash(k fileKey) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d, ok := a.hashes[k]
	return d, ok
}

func (a *Attestor) storeHash(k fileKey, digest string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.hashes[k]; ok {
		return
	}
	for len(a.hashOrder) >= a.hashMax && len(a.hashOrder) > 0 {
		delete(a.hashes, a.hashOrder[0])
		a.hashOrder = a.hashOrder[1:]
	}
	a.hashes[k] = digest
	a.hashOrder = append(a.hashOrder, k)
}

type status struct {
	uid, gid string
	groups   []string
}

// readStatus reads the effective UID and GID and the supplementary groups
// from <dir>/status.
func readStatus(dir string) (status, error) {
	st, err := procfs.ReadStatus(dir)
	if err != nil {
		return status{}, fmt.Errorf("unix: %w", err)
	}
	out := status{uid: formatID(st.EffectiveUID()), gid: formatID(st.EffectiveGID())}
	for _, g := range st.Groups {
		out.groups = append(out.groups, formatID(g))
	}
	return out, nil
}

func formatID(id uint32) string { return strconv.FormatUint(uint64(id), 10) }

// readStartTime returns field 22 (starttime, clock ticks after boot) of
// <dir>/stat.
func readStartTime(dir string) (string, error) {
	st, err := procfs.ReadStat(dir)
	if err != nil {
		return "", fmt.Errorf("unix: %w", err)
	}
	return strconv.FormatUint(st.StartTime, 10), nil
}
