package etcdserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const attackEnv = "SIGNET_ETCD_ATTACK_TARGETS"

// TestOtherUIDCannotReachEmbeddedEtcd starts the embedded member as the
// server does (Dir = <data dir>/etcd), enumerates every listening socket
// this process owns from /proc, and has a uid 65534 process try to write
// and read an etcd key through each. The directories above the etcd
// directory are traversable (0755), so only the etcd directory's 0700
// and, in the second round, the socket's 0600 stand in the way. A root
// run of the same attacker is the control: it must reach the socket.
func TestOtherUIDCannotReachEmbeddedEtcd(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := traversableDir(t)
	data := filepath.Join(base, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Start(ctx, Config{Dir: filepath.Join(data, "etcd")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Client().Put(ctx, "/signet/secret", "v"); err != nil {
		t.Fatal(err)
	}
	targets := listeningTargets(t)
	var sawSocket bool
	for _, tg := range targets {
		if strings.HasSuffix(tg, ClientSocketName) {
			sawSocket = true
		}
		if strings.HasPrefix(tg, "http") {
			t.Errorf("the embedded member listens on TCP: %s", tg)
		}
	}
	if !sawSocket {
		t.Fatalf("client socket not among this process's listeners %v", targets)
	}
	bin := attackerBinary(t, base)

	// Control: the same attacker as root (the owner) reaches the socket.
	if out := runAttacker(t, bin, targets, false); !strings.Contains(out, "REACHED unix://") {
		t.Fatalf("root control did not reach the client socket:\n%s", out)
	}
	for _, round := range []struct {
		name    string
		dirMode os.FileMode
	}{{"etcd dir 0700", 0o700}, {"etcd dir 0711, socket 0600", 0o711}} {
		if err := os.Chmod(filepath.Join(data, "etcd"), round.dirMode); err != nil {
			t.Fatal(err)
		}
		out := runAttacker(t, bin, targets, true)
		t.Logf("%s: uid 65534 attacker:\n%s", round.name, out)
		if strings.Contains(out, "REACHED") || strings.Count(out, "BLOCKED") != len(targets) {
			t.Errorf("%s: uid 65534 reached etcd (or did not try every listener):\n%s", round.name, out)
		}
	}
	assertUntouched(ctx, t, s.Client())
}

// TestOtherUIDCannotReachClusterMembers does the same against a 3-member
// TLS cluster: its TCP listeners require a client certificate of the
// cluster CA, whose key is readable by root only.
func TestOtherUIDCannotReachClusterMembers(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("starts a 3-member etcd cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := traversableDir(t)
	servers, err := StartCluster(ctx, filepath.Join(base, "etcd"), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	if _, err := servers[0].Client().Put(ctx, "/signet/secret", "v"); err != nil {
		t.Fatal(err)
	}
	targets := listeningTargets(t)
	var tcp int
	for _, tg := range targets {
		if strings.HasPrefix(tg, "https://") {
			tcp++
		}
	}
	if tcp < 6 {
		t.Fatalf("found %d TCP listeners, want the 3 client and 3 peer ones: %v", tcp, targets)
	}
	out := runAttacker(t, attackerBinary(t, base), targets, true)
	t.Logf("uid 65534 attacker:\n%s", out)
	if strings.Contains(out, "REACHED") || strings.Count(out, "BLOCKED") != len(targets) {
		t.Errorf("uid 65534 reached etcd (or did not try every listener):\n%s", out)
	}
	assertUntouched(ctx, t, servers[1].Client())
}

// TestHelperEtcdAttacker is the attacker process of the tests above.
func TestHelperEtcdAttacker(t *testing.T) {
	raw := os.Getenv(attackEnv)
	if raw == "" {
		t.Skip("helper process only")
	}
	for tg := range strings.SplitSeq(raw, ",") {
		if err := attack(tg); err != nil {
			fmt.Printf("BLOCKED %s (uid %d): %v [raw: %v]\n", tg, os.Getuid(), firstLine(err), rawProbe(tg))
		} else {
			fmt.Printf("REACHED %s (uid %d)\n", tg, os.Getuid())
		}
	}
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
			_, err = cli.Get(ctx, "/signet/secret")
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
	_, err = c.Read(make([]byte, 1)) // TLS 1.3: the server rejects the missing certificate after the handshake
	if err != nil {
		return "handshake done, then: " + err.Error()
	}
	return "connected"
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the attacker as uid 65534")
	}
}

// traversableDir returns a fresh directory under /tmp that every uid may
// traverse (0755), removed at the end of the test.
func traversableDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "etcdattack")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// attackerBinary copies the test binary where uid 65534 can execute it
// (the go build directory is 0700).
func attackerBinary(t *testing.T, dir string) string {
	t.Helper()
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "attacker.test")
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

func runAttacker(t *testing.T, bin string, targets []string, asNobody bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestHelperEtcdAttacker$", "-test.v")
	cmd.Env = append(os.Environ(), attackEnv+"="+strings.Join(targets, ","))
	cmd.Dir = "/"
	if asNobody {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("attacker: %v\n%s", err, out)
	}
	var lines []string
	for l := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(l, "BLOCKED") || strings.HasPrefix(l, "REACHED") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

func assertUntouched(ctx context.Context, t *testing.T, cli *clientv3.Client) {
	t.Helper()
	resp, err := cli.Get(ctx, "/signet/attacker")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) != "0" { // the root control run may write it
			t.Errorf("attacker wrote /signet/attacker = %q", kv.Value)
		}
	}
}

// listeningTargets enumerates the listening TCP and Unix sockets this
// process holds (socket inodes of /proc/self/fd, matched in
// /proc/self/net/{tcp,tcp6,unix}), as URLs: https://host:port for TCP
// (attack tries http and https), unix://path for Unix sockets.
func listeningTargets(t *testing.T) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, f := range []string{"tcp", "tcp6"} {
		for _, fields := range procLines(t, "/proc/self/net/"+f) {
			// sl local_address rem_address st ... uid timeout inode
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			out = append(out, "https://"+hexAddr(t, fields[1]))
		}
	}
	for _, fields := range procLines(t, "/proc/self/net/unix") {
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

func procLines(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
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
func hexAddr(t *testing.T, s string) string {
	t.Helper()
	h, p, _ := strings.Cut(s, ":")
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+4 <= len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	port, _ := strconv.ParseUint(p, 16, 16)
	return net.JoinHostPort(net.IP(b).String(), strconv.FormatUint(port, 10))
}
