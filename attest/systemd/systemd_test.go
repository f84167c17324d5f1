package systemd_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/proto"

	"github.com/signet-id/signet/attest/systemd"
	"github.com/signet-id/signet/attest/systemd/systemdtest"
)

// setup starts a real dbus-daemon with the systemd stand-in on it and an
// attestor that talks to it through the daemon.
func setup(t *testing.T) (*systemdtest.Bus, *systemdtest.Systemd, *systemd.Attestor) {
	t.Helper()
	bus := systemdtest.StartBus(t)
	sd := systemdtest.Serve(t, bus)
	a := systemd.New(systemd.WithBusAddress(bus.Address))
	t.Cleanup(func() { _ = a.Close() })
	return bus, sd, a
}

func values(t *testing.T, sel []*types.Selector) []string {
	t.Helper()
	var out []string
	for _, s := range sel {
		if s.GetType() != systemd.SelectorType {
			t.Fatalf("selector type %q, want %q", s.GetType(), systemd.SelectorType)
		}
		// Every selector must survive the wire (proto strings are UTF-8).
		b, err := proto.Marshal(s)
		if err != nil {
			t.Fatalf("marshal %q: %v", s.GetValue(), err)
		}
		var back types.Selector
		if err := proto.Unmarshal(b, &back); err != nil || back.GetValue() != s.GetValue() {
			t.Fatalf("selector %q did not round-trip: %q, %v", s.GetValue(), back.GetValue(), err)
		}
		out = append(out, s.GetValue())
	}
	return out
}

func TestAttestSelectors(t *testing.T) {
	_, sd, a := setup(t)
	tests := []struct {
		name         string
		id, fragment string
	}{
		{"service", "nginx.service", "/lib/systemd/system/nginx.service"},
		{"template instance", "getty@tty1.service", "/lib/systemd/system/getty@.service"},
		{"transient unit has no fragment", "run-u7.service", ""},
		{"escaped name", `system-serial\x2dgetty.slice`, "/etc/systemd/system/a b.service"},
		{"colons in name and path", "foo:fragment_path:x.service", "/etc/systemd/system/id:evil.service"},
		{"newline and unicode in path", "wéird.service", "/etc/systemd/system/wéird\nid:root.service"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pid := int32(100000 + i)
			sd.AddUnit(t, tt.id, map[string]any{"Id": tt.id, "FragmentPath": tt.fragment}, pid)
			sel, err := a.Attest(context.Background(), pid)
			if err != nil {
				t.Fatal(err)
			}
			// The value is the kind, a colon, then the property verbatim:
			// the kind is what precedes the first colon, so no unit name
			// or path can pass for another kind.
			want := []string{"id:" + tt.id, "fragment_path:" + tt.fragment}
			if got := values(t, sel); !slices.Equal(got, want) {
				t.Fatalf("selectors %q, want %q", got, want)
			}
		})
	}
}

// TestAttestAsksAboutTheGivenPID: the attestor asks systemd about the PID
// it is given (the agent passes the Workload API caller's SO_PEERCRED PID),
// never about itself. systemd reads PID 0 as "the caller", so 0 would
// attest the agent's own unit: it is refused before any call.
func TestAttestAsksAboutTheGivenPID(t *testing.T) {
	_, sd, a := setup(t)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	child := exec.Command(sleep, "60")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	pid := int32(child.Process.Pid)
	sd.AddUnit(t, "workload.service", map[string]any{"Id": "workload.service", "FragmentPath": "/etc/systemd/system/workload.service"}, pid)
	sd.AddUnit(t, "signet-agent.service", map[string]any{"Id": "signet-agent.service", "FragmentPath": "/etc/systemd/system/signet-agent.service"}, int32(os.Getpid()))

	sel, err := a.Attest(context.Background(), pid)
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, sel); got[0] != "id:workload.service" {
		t.Fatalf("selectors %q, want the workload's unit", got)
	}
	for _, bad := range []int32{0, -1} {
		sel, err := a.Attest(context.Background(), bad)
		if err == nil || sel != nil || !strings.Contains(err.Error(), "invalid pid") {
			t.Fatalf("Attest(%d) = %v, %v; want an invalid pid error", bad, sel, err)
		}
	}
	if got := sd.Asked(); !slices.Equal(got, []uint32{uint32(pid)}) {
		t.Fatalf("systemd was asked about %v, want only the workload's PID %d", got, pid)
	}
}

// TestAttestNoUnit: systemd's NoUnitForPID gives no systemd selectors and
// no error (SPIRE's plugin errors and SPIRE's agent then drops its
// selectors: the workload is attested with the other attestors' alone).
func TestAttestNoUnit(t *testing.T) {
	_, sd, a := setup(t)
	sel, err := a.Attest(context.Background(), 4242)
	if err != nil || sel != nil {
		t.Fatalf("Attest = %v, %v; want no selectors and no error", sel, err)
	}
	if got := sd.Asked(); !slices.Equal(got, []uint32{4242}) {
		t.Fatalf("asked %v", got)
	}
}

func TestAttestUnusableUnit(t *testing.T) {
	_, sd, a := setup(t)
	tests := []struct {
		name  string
		props map[string]any
		want  string
	}{
		{"Id missing", map[string]any{"FragmentPath": "/x.service"}, "Id of /org/freedesktop/systemd1/unit/"},
		{"FragmentPath missing", map[string]any{"Id": "x.service"}, "FragmentPath of /org/freedesktop/systemd1/unit/"},
		{"Id not a string", map[string]any{"Id": uint32(7), "FragmentPath": "/x.service"}, "is u, not a string"},
		{"FragmentPath an array", map[string]any{"Id": "x.service", "FragmentPath": []string{"/a", "/b"}}, "is as, not a string"},
		{"FragmentPath too long", map[string]any{"Id": "x.service", "FragmentPath": "/" + strings.Repeat("a", 5000)}, "5001 bytes, over 4096"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pid := int32(200000 + i)
			sd.AddUnit(t, "unit"+string(rune('a'+i))+".service", tt.props, pid)
			sel, err := a.Attest(context.Background(), pid)
			if !errors.Is(err, systemd.ErrBadUnit) || sel != nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Attest = %v, %v; want ErrBadUnit mentioning %q", sel, err, tt.want)
			}
		})
	}
}

// TestAttestBusDown: no bus, a bus without systemd, a bus that goes away
// and comes back.
func TestAttestBusDown(t *testing.T) {
	t.Run("no bus", func(t *testing.T) {
		addr := "unix:path=" + filepath.Join(t.TempDir(), "missing")
		a := systemd.New(systemd.WithBusAddress(addr))
		sel, err := a.Attest(context.Background(), 1)
		if !errors.Is(err, systemd.ErrBusUnavailable) || sel != nil || !strings.Contains(err.Error(), "connect to "+addr) {
			t.Fatalf("Attest = %v, %v; want ErrBusUnavailable naming %s", sel, err, addr)
		}
	})
	t.Run("no systemd on the bus", func(t *testing.T) {
		bus := systemdtest.StartBus(t)
		a := systemd.New(systemd.WithBusAddress(bus.Address))
		defer a.Close()
		sel, err := a.Attest(context.Background(), 1)
		if err == nil || sel != nil || !strings.Contains(err.Error(), "org.freedesktop.systemd1") {
			t.Fatalf("Attest = %v, %v; want an error naming org.freedesktop.systemd1", sel, err)
		}
	})
	t.Run("bus restarts", func(t *testing.T) {
		bus, sd, a := setup(t)
		sd.AddUnit(t, "a.service", map[string]any{"Id": "a.service", "FragmentPath": "/a.service"}, 10)
		if _, err := a.Attest(context.Background(), 10); err != nil {
			t.Fatal(err)
		}
		bus.Stop()
		if sel, err := a.Attest(context.Background(), 10); err == nil || sel != nil {
			t.Fatalf("Attest with the bus down = %v, %v; want an error", sel, err)
		}
		bus.Start()
		sd = systemdtest.Serve(t, bus)
		sd.AddUnit(t, "b.service", map[string]any{"Id": "b.service", "FragmentPath": "/b.service"}, 10)
		sel, err := a.Attest(context.Background(), 10)
		if err != nil {
			t.Fatalf("Attest after the bus came back: %v", err)
		}
		if got := values(t, sel); got[0] != "id:b.service" {
			t.Fatalf("selectors %q", got)
		}
	})
	t.Run("bus never answers", func(t *testing.T) {
		// A socket that accepts and says nothing: opening the connection
		// ends with the caller's context.
		sock := filepath.Join(t.TempDir(), "mute")
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			if c, err := l.Accept(); err == nil {
				accepted <- c
			}
		}()
		ctx, cancel := context.WithCancel(context.Background())
		a := systemd.New(systemd.WithBusAddress("unix:path=" + sock))
		done := make(chan error, 1)
		go func() { _, err := a.Attest(ctx, 1); done <- err }()
		c := <-accepted
		defer c.Close()
		cancel()
		if err := <-done; !errors.Is(err, systemd.ErrBusUnavailable) {
			t.Fatalf("Attest = %v, want ErrBusUnavailable", err)
		}
	})
}

// TestDefaultIsTheSystemBus: with no address the attestor connects to the
// system bus, found as SPIRE finds it ($DBUS_SYSTEM_BUS_ADDRESS).
func TestDefaultIsTheSystemBus(t *testing.T) {
	bus := systemdtest.StartBus(t)
	sd := systemdtest.Serve(t, bus)
	sd.AddUnit(t, "c.service", map[string]any{"Id": "c.service", "FragmentPath": "/c.service"}, 11)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Address)
	a := systemd.New()
	defer a.Close()
	sel, err := a.Attest(context.Background(), 11)
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, sel); got[0] != "id:c.service" {
		t.Fatalf("selectors %q", got)
	}
}

// TestConcurrentAttestations share one connection.
func TestConcurrentAttestations(t *testing.T) {
	_, sd, a := setup(t)
	const n = 8
	for i := range n {
		name := "w" + string(rune('a'+i)) + ".service"
		sd.AddUnit(t, name, map[string]any{"Id": name, "FragmentPath": "/" + name}, int32(300+i))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			sel, err := a.Attest(context.Background(), int32(300+i))
			if want := "id:w" + string(rune('a'+i)) + ".service"; err == nil && (len(sel) != 2 || sel[0].GetValue() != want) {
				err = fmt.Errorf("pid %d: selectors %v, want %s first", 300+i, sel, want)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}
