// Package systemdtest runs what the systemd workload attestor talks to in
// tests: a real dbus-daemon (Debian package dbus-daemon) with a
// system-like configuration on a Unix socket in the test's temporary
// directory, and a stand-in for systemd's manager (systemd is not PID 1
// here) that owns org.freedesktop.systemd1 on that bus and answers
// GetUnitByPID and the units' properties for the PIDs a test registers.
// A missing dbus-daemon fails the test when CI=true and skips it
// otherwise.
package systemdtest

import (
	"bufio"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

//go:embed bus.conf
var busConf []byte

// Bus is a running dbus-daemon.
type Bus struct {
	// Address is the bus's D-Bus address (unix:path=…).
	Address string

	t    testing.TB
	conf string
	sock string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartBus starts a dbus-daemon listening on a Unix socket in a new
// temporary directory (a short path: socket paths are limited to 108
// bytes); it is stopped when the test ends.
func StartBus(t testing.TB) *Bus {
	t.Helper()
	dir, err := os.MkdirTemp("", "dbus")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, busConf, 0o600); err != nil {
		t.Fatal(err)
	}
	b := &Bus{t: t, conf: conf, sock: filepath.Join(dir, "bus")}
	b.Start()
	t.Cleanup(b.Stop)
	return b
}

// Start (re)starts the daemon on the bus's socket path; it must be
// stopped.
func (b *Bus) Start() {
	b.t.Helper()
	bin, err := exec.LookPath("dbus-daemon")
	if err != nil {
		if os.Getenv("CI") == "true" {
			b.t.Fatal("dbus-daemon not found: run scripts/install-debs.sh")
		}
		b.t.Skip("dbus-daemon not found: run scripts/install-debs.sh")
	}
	_ = os.Remove(b.sock)
	cmd := exec.Command(bin, "--config-file="+b.conf, "--address=unix:path="+b.sock,
		"--nofork", "--nopidfile", "--print-address=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("start dbus-daemon: %v", err)
	}
	b.cmd, b.done = cmd, make(chan struct{})
	// The daemon prints its address once it listens.
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		b.t.Fatalf("dbus-daemon printed no address: %v; stderr: %s", err, stderr.String())
	}
	b.Address = "unix:path=" + b.sock
	if !strings.HasPrefix(line, b.Address) {
		b.t.Fatalf("dbus-daemon listens on %q, want %s", line, b.Address)
	}
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(cmd, b.done)
}

// Stop stops the daemon (every connection to it is dropped) and waits for
// it to exit. Stopping a stopped bus does nothing.
func (b *Bus) Stop() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Kill()
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		b.t.Errorf("dbus-daemon %d did not exit", b.cmd.Process.Pid)
	}
	b.cmd = nil
}

// Connect opens a connection to the bus, closed when the test ends.
func (b *Bus) Connect(t testing.TB) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(b.Address)
	if err != nil {
		t.Fatalf("connect to %s: %v", b.Address, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// The systemd manager API the stand-in serves.
const (
	BusName     = "org.freedesktop.systemd1"
	managerPath = dbus.ObjectPath("/org/freedesktop/systemd1")
	managerIf   = "org.freedesktop.systemd1.Manager"
	unitIf      = "org.freedesktop.systemd1.Unit"
	propsIf     = "org.freedesktop.DBus.Properties"
	// NoUnitForPID is systemd's error for a PID in no loaded unit.
	NoUnitForPID = "org.freedesktop.systemd1.NoUnitForPID"
)

// Systemd is the stand-in for systemd's manager on a bus.
type Systemd struct {
	conn *dbus.Conn

	mu    sync.Mutex
	byPID map[uint32]string // PID → unit name
	asked []uint32          // PIDs GetUnitByPID was asked about, 0 resolved
}

// Serve connects to bus, owns org.freedesktop.systemd1 and serves the
// manager object, until the test ends.
func Serve(t testing.TB, bus *Bus) *Systemd {
	t.Helper()
	s := &Systemd{conn: bus.Connect(t), byPID: map[uint32]string{}}
	if err := s.conn.Export(manager{s}, managerPath, managerIf); err != nil {
		t.Fatal(err)
	}
	reply, err := s.conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: reply %v, %v", BusName, reply, err)
	}
	return s
}

// AddUnit registers unit name with exactly the given properties of its
// org.freedesktop.systemd1.Unit interface (a real unit has at least Id
// and FragmentPath, "" for a transient unit), and the PIDs in it.
func (s *Systemd) AddUnit(t testing.TB, name string, props map[string]any, pids ...int32) {
	t.Helper()
	if err := s.conn.Export(unit(props), UnitPath(name), propsIf); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range pids {
		s.byPID[uint32(p)] = name
	}
}

// Asked returns the PIDs GetUnitByPID was asked about, in order.
func (s *Systemd) Asked() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint32(nil), s.asked...)
}

// UnitPath is the object path systemd gives unit name: its bytes other
// than ASCII letters and digits are escaped as _xx (systemd's
// bus_label_escape).
func UnitPath(name string) dbus.ObjectPath {
	var b strings.Builder
	b.WriteString("/org/freedesktop/systemd1/unit/")
	if name == "" {
		b.WriteString("_")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "_%02x", c)
	}
	return dbus.ObjectPath(b.String())
}

type manager struct{ s *Systemd }

// GetUnitByPID answers as systemd: PID 0 means the caller's own PID (read
// from the bus); a PID in no registered unit is NoUnitForPID.
func (m manager) GetUnitByPID(sender dbus.Sender, pid uint32) (dbus.ObjectPath, *dbus.Error) {
	if pid == 0 {
		if err := m.s.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, string(sender)).Store(&pid); err != nil {
			return "", dbus.MakeFailedError(err)
		}
	}
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	m.s.asked = append(m.s.asked, pid)
	name, ok := m.s.byPID[pid]
	if !ok {
		return "", dbus.NewError(NoUnitForPID, []any{fmt.Sprintf("PID %d does not belong to any loaded unit.", pid)})
	}
	return UnitPath(name), nil
}

type unit map[string]any

// Get implements org.freedesktop.DBus.Properties.Get for the Unit
// interface.
func (u unit) Get(iface, prop string) (dbus.Variant, *dbus.Error) {
	v, ok := u[prop]
	if iface != unitIf || !ok {
		return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{"Unknown property or interface."})
	}
	return dbus.MakeVariant(v), nil
}
