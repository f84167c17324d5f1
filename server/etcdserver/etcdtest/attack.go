package etcdtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/nobodytest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// AttackEnv carries the targets to the attacker process.
const AttackEnv = "SIGNET_ETCD_ATTACK_TARGETS"

// RequireRoot skips tb unless it runs as root (needed to start the
// attacker as uid 65534).
func RequireRoot(tb testing.TB) {
	tb.Helper()
	nobodytest.RequireRoot(tb)
}

// TraversableDir returns a fresh directory under /tmp that every uid may
// traverse (0755), removed at the end of the test.
func TraversableDir(tb testing.TB) string {
	tb.Helper()
	d, err := os.MkdirTemp("", "etcdattack")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		tb.Fatal(err)
	}
	return d
}

// AttackFromEnv is the body of the attacker process (a TestHelper… test
// the test binary re-runs): for each target in AttackEnv it tries to
// write and read an etcd key, and prints "REACHED target" or "BLOCKED
// target: why". It reports whether it ran (AttackEnv set).
func AttackFromEnv() bool {
	raw := os.Getenv(AttackEnv)
	if raw == "" {
		return false
	}
	for tg := range strings.SplitSeq(raw, ",") {
		if err := attack(tg); err != nil {
			fmt.Printf("BLOCKED %s (uid %d): %v [raw: %v]\n", tg, os.Getuid(), firstLine(err), rawProbe(tg))
		} else {
			fmt.Printf("REACHED %s (uid %d)\n", tg, os.Getuid())
		}
	}
	return true
}

// attack writes and reads a key through target, plaintext first, then (on
// TCP) over TLS without a client certificate.
func attack(target string) error {
	var errs []string
	for _, tc := range []*tls.Config{nil, {InsecureSkipVerify: true}} {
		ep := target
		if tc == nil && strings.HasPrefix(target, "https://") {
			ep = "http://" + strings.TrimPrefix(target, "https://")
		} else if tc != nil && !strings.HasPrefix(target, "https://") {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := func() error {
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, TLS: tc, DialTimeout: time.Second})
			if err != nil {
				return err
			}
			defer cli.Close()
			if _, err := cli.Put(ctx, "/signet/attacker", strconv.Itoa(os.Getuid())); err != nil {
				return err
			}
			_, err = cli.Get(ctx, "/signet/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
			return err
		}()
		cancel()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", ep, err))
	}
	return fmt.Errorf("%s", strings.Join(errs, "; "))
}

// rawProbe shows why the transport refuses: a Unix connect, or a TLS
// handshake without a client certificate.
func rawProbe(target string) string {
	if path, ok := strings.CutPrefix(target, "unix://"); ok {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err != nil {
			return err.Error()
		}
		c.Close()
		return "connected"
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", strings.TrimPrefix(target, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	// TLS 1.3: a server that wants a client certificate says so after
	// the handshake.
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return "handshake done, then: " + err.Error()
	}
	return "connected"
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// RunAttacker runs the test binary's helper test helperTest (which calls
// AttackFromEnv) against targets, as uid 65534 if asNobody, and returns
// its REACHED/BLOCKED lines. The binary is copied into dir first (the go
// build directory is 0700).
func RunAttacker(tb testing.TB, dir, helperTest string, targets []string, asNobody bool) string {
	tb.Helper()
	bin := filepath.Join(dir, "attacker.test")
	if _, err := os.Stat(bin); err != nil {
		nobodytest.CopyFile(tb, os.Args[0], bin, 0o755)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^"+helperTest+"$", "-test.v")
	cmd.Env = append(os.Environ(), AttackEnv+"="+strings.Join(targets, ","))
	cmd.Dir = "/"
	if asNobody {
		nobodytest.As(cmd)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("attacker: %v\n%s", err, out)
	}
	var lines []string
	for l := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(l, "BLOCKED") || strings.HasPrefix(l, "REACHED") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// Listeners enumerates the listening TCP and Unix sockets this process
// holds (socket inodes of /proc/self/fd, matched in
// /proc/self/net/{tcp,tcp6,unix}), as URLs: https://host:port for TCP
// (the attacker tries http and https), unix://path for Unix sockets.
func Listeners(tb testing.TB) []string {
	tb.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, f := range []string{"tcp", "tcp6"} {
		for _, fields := range procLines(tb, "/proc/self/net/"+f) {
			// sl local_address rem_address st ... uid timeout inode
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			out = append(out, "https://"+hexAddr(tb, fields[1]))
		}
	}
	for _, fields := range procLines(tb, "/proc/self/net/unix") {
		// Num RefCount Protocol Flags Type St Inode Path
		if len(fields) < 8 || !inodes[fields[6]] {
			continue
		}
		flags, _ := strconv.ParseUint(fields[3], 16, 32)
		if flags&0x10000 == 0 { // __SO_ACCEPTCON: listening
			continue
		}
		out = append(out, "unix://"+fields[7])
	}
	return out
}

func procLines(tb testing.TB, path string) [][]string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		out = append(out, strings.Fields(sc.Text()))
	}
	return out
}

// hexAddr decodes /proc/net/tcp's "0100007F:1F90" (little-endian words).
func hexAddr(tb testing.TB, s string) string {
	tb.Helper()
	h, p, _ := strings.Cut(s, ":")
	b, err := hex.DecodeString(h)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+4 <= len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	port, _ := strconv.ParseUint(p, 16, 16)
	return net.JoinHostPort(net.IP(b).String(), strconv.FormatUint(port, 10))
}
