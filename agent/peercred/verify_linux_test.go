//go:build linux

package peercred

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// fakeProc is a procfs with an entry for this process that tests edit.
type fakeProc struct {
	root, dir string
}

func newFakeProc(t *testing.T) *fakeProc {
	t.Helper()
	root := t.TempDir()
	p := &fakeProc{root: root, dir: filepath.Join(root, strconv.Itoa(os.Getpid()))}
	if err := os.Mkdir(p.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("%d (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0\n", os.Getpid())
	p.write(t, "stat", line)
	p.status(t, os.Geteuid(), os.Geteuid(), os.Getegid())
	p.exe(t, "/proc/self/exe")
	return p
}

func (p *fakeProc) write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(p.dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (p *fakeProc) status(t *testing.T, ruid, euid, gid int) {
	t.Helper()
	p.write(t, "status", fmt.Sprintf("Name:\tx\nUid:\t%d\t%d\t%d\t%d\nGid:\t%d\t%d\t%d\t%d\n", ruid, euid, euid, euid, gid, gid, gid, gid))
}

func (p *fakeProc) exe(t *testing.T, target string) {
	t.Helper()
	link := filepath.Join(p.dir, "exe")
	os.Remove(link)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// handshake connects to a fresh listener and runs the server handshake on
// the accepted end.
func handshake(t *testing.T, opts ...Option) (AuthInfo, net.Conn, error) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := net.Listen("unix", filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return handshakeOn(t, l, NewCredentials(opts...).(*creds))
}

func handshakeOn(t *testing.T, l net.Listener, c *creds) (AuthInfo, net.Conn, error) {
	t.Helper()
	client, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	conn, info, err := c.ServerHandshake(server)
	if err != nil {
		server.Close()
		return AuthInfo{}, nil, err
	}
	t.Cleanup(func() { conn.Close() })
	return info.(AuthInfo), conn, nil
}

// TestVerifyDetectsChangedCaller: after the handshake the fake /proc entry
// takes what a setuid exec, a setgid exec, a non-dumpable process or an
// exec of another program would show; Verify must fail with
// ErrCallerChanged.
func TestVerifyDetectsChangedCaller(t *testing.T) {
	uid, gid := os.Geteuid(), os.Getegid()
	other, err := os.CreateTemp(t.TempDir(), "other-exe")
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	tests := []struct {
		name   string
		change func(t *testing.T, p *fakeProc)
	}{
		{"setuid exec (effective and saved uid)", func(t *testing.T, p *fakeProc) { p.status(t, uid, uid+1, gid) }},
		{"real uid differs", func(t *testing.T, p *fakeProc) { p.status(t, uid+1, uid, gid) }},
		{"setgid exec", func(t *testing.T, p *fakeProc) { p.status(t, uid, uid, gid+1) }},
		{"owner of /proc/pid (non-dumpable)", func(t *testing.T, p *fakeProc) {
			if err := os.Chown(p.dir, uid+1, gid); err != nil {
				t.Skip(err)
			}
		}},
		{"exec of another program", func(t *testing.T, p *fakeProc) { p.exe(t, other.Name()) }},
		{"executable unreadable", func(t *testing.T, p *fakeProc) { p.exe(t, "/nonexistent") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newFakeProc(t)
			ai, _, err := handshake(t, WithProcRoot(p.root))
			if err != nil {
				t.Fatal(err)
			}
			if err := ai.Verify(); err != nil {
				t.Fatalf("Verify before the change: %v", err)
			}
			tt.change(t, p)
			if err := ai.Verify(); !errors.Is(err, ErrCallerChanged) {
				t.Fatalf("Verify after the change: %v, want ErrCallerChanged", err)
			}
		})
	}
}

// countFDs counts this process's open file descriptors.
func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1
}

// TestConnectionsOfOneProcessShareAPidfd: n connections cost the server n
// sockets and one pidfd, all released on close.
func TestConnectionsOfOneProcessShareAPidfd(t *testing.T) {
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := net.Listen("unix", filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := NewCredentials().(*creds)
	const n = 3
	base := countFDs(t)
	var conns []net.Conn
	var clients []net.Conn
	for i := 0; i < n; i++ {
		client, err := net.Dial("unix", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, client)
		server, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		conn, ai, err := c.ServerHandshake(server)
		if err != nil {
			t.Fatal(err)
		}
		if err := ai.(AuthInfo).Verify(); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	// Each connection: a client and a server socket (same process).
	if got, want := countFDs(t)-base, 2*n+1; got != want {
		t.Errorf("%d descriptors for %d connections, want %d (sockets and one shared pidfd)", got, n, want)
	}
	for i := range conns {
		conns[i].Close()
		clients[i].Close()
	}
	if got := countFDs(t); got != base {
		t.Errorf("%d descriptors after close, want %d", got, base)
	}
}

// TestAdmitHook: a refused connection holds no pidfd, carries the refusal
// and fails Verify; CloseNow fails the handshake; release runs once at close.
func TestAdmitHook(t *testing.T) {
	released := 0
	refuse := error(nil)
	admit := func(uint32) (func(), error) { return func() { released++ }, refuse }

	ai, conn, err := handshake(t, WithAdmit(admit))
	if err != nil || ai.Refused != nil {
		t.Fatalf("admitted: %v %v", err, ai.Refused)
	}
	conn.Close()
	conn.Close()
	if released != 1 {
		t.Fatalf("released %d times, want 1", released)
	}

	refuse = &RefusedError{Reason: "over the limit"}
	ai, conn, err = handshake(t, WithAdmit(admit))
	if err != nil || ai.Refused == nil || ai.Refused.Error() != "over the limit" {
		t.Fatalf("refused: %v %v", err, ai.Refused)
	}
	if err := ai.Verify(); !errors.Is(err, ErrCallerGone) {
		t.Fatalf("Verify of a refused connection: %v", err)
	}
	conn.Close()
	if released != 2 {
		t.Fatalf("released %d times, want 2", released)
	}

	refuse = &RefusedError{Reason: "far over the limit", CloseNow: true}
	if _, _, err = handshake(t, WithAdmit(admit)); err == nil {
		t.Fatal("CloseNow: handshake succeeded")
	}
	if released != 3 {
		t.Fatalf("released %d times, want 3", released)
	}
}
