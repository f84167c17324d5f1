// Package systemd is the systemd workload attestor: given the process ID
// of a workload connected to the agent's Workload API socket, it asks
// systemd over D-Bus which unit the process belongs to
// (org.freedesktop.systemd1.Manager.GetUnitByPID) and returns "systemd"
// selectors with the same names and meanings as SPIRE's systemd workload
// attestor: id:<unit Id> and fragment_path:<unit FragmentPath>.
//
// Binding the result to the process that connected is the caller's job
// (the agent's peercred package checks after attestation that the PID
// still names the process that connected).
package systemd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/godbus/dbus/v5"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// SelectorType is the type of every selector this attestor produces.
const SelectorType = "systemd"

// The systemd D-Bus API this attestor uses.
const (
	busName          = "org.freedesktop.systemd1"
	managerPath      = dbus.ObjectPath("/org/freedesktop/systemd1")
	getUnitByPID     = "org.freedesktop.systemd1.Manager.GetUnitByPID"
	unitInterface    = "org.freedesktop.systemd1.Unit"
	propertiesGet    = "org.freedesktop.DBus.Properties.Get"
	errNoUnitForPID  = "org.freedesktop.systemd1.NoUnitForPID"
	maxPropertyBytes = 4096 // systemd's PATH_MAX; unit names are at most 255 bytes
)

// Errors callers may branch on.
var (
	// ErrBusUnavailable: the D-Bus bus could not be reached.
	ErrBusUnavailable = errors.New("systemd: D-Bus bus unavailable")
	// ErrBadUnit: systemd's answer about the unit was not usable (a
	// property missing, of the wrong type, too long or not text).
	ErrBadUnit = errors.New("systemd: unusable unit property")
)

// Attestor produces systemd selectors for a process. It holds one D-Bus
// connection, opened on first use and reopened when it is lost; it is safe
// for concurrent use.
type Attestor struct {
	address string // "" means the system bus
	log     *slog.Logger

	mu     sync.Mutex
	conn   *dbus.Conn
	cancel context.CancelFunc // ends conn's context
}

// Option configures an Attestor.
type Option func(*Attestor)

// WithBusAddress sets the D-Bus address to connect to (for example
// "unix:path=/run/dbus/system_bus_socket"). The default, "", is the system
// bus: $DBUS_SYSTEM_BUS_ADDRESS or unix:path=/var/run/dbus/system_bus_socket,
// as SPIRE.
func WithBusAddress(addr string) Option {
	return func(a *Attestor) { a.address = addr }
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
	a := &Attestor{log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Attest returns the systemd selectors of the unit process pid belongs to.
// A process in no loaded unit (systemd's NoUnitForPID) has no systemd
// selectors and no error: SPIRE's agent drops the failing plugin's
// selectors and attests the workload with the others, which is the same
// outcome. Every other failure is an error.
func (a *Attestor) Attest(ctx context.Context, pid int32) ([]*types.Selector, error) {
	// systemd reads PID 0 as "the caller", which is the agent itself.
	if pid <= 0 {
		return nil, fmt.Errorf("systemd: invalid pid %d", pid)
	}
	conn, err := a.connect(ctx)
	if err != nil {
		return nil, err
	}
	var unit dbus.ObjectPath
	err = conn.Object(busName, managerPath).CallWithContext(ctx, getUnitByPID, 0, uint32(pid)).Store(&unit)
	switch {
	case errorName(err) == errNoUnitForPID:
		a.log.Debug("systemd: process belongs to no unit", "pid", pid)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("systemd: get unit of pid %d: %w", pid, err)
	}
	obj := conn.Object(busName, unit)
	id, err := stringProperty(ctx, obj, "Id")
	if err != nil {
		return nil, err
	}
	fragment, err := stringProperty(ctx, obj, "FragmentPath")
	if err != nil {
		return nil, err
	}
	return []*types.Selector{
		{Type: SelectorType, Value: "id:" + id},
		{Type: SelectorType, Value: "fragment_path:" + fragment},
	}, nil
}

// errorName is the D-Bus error name of err, "" if it is no D-Bus error
// reply.
func errorName(err error) string {
	var v dbus.Error
	if errors.As(err, &v) {
		return v.Name
	}
	var p *dbus.Error
	if errors.As(err, &p) && p != nil {
		return p.Name
	}
	return ""
}

// stringProperty reads one string property of the unit's
// org.freedesktop.systemd1.Unit interface.
func stringProperty(ctx context.Context, obj dbus.BusObject, name string) (string, error) {
	var v dbus.Variant
	if err := obj.CallWithContext(ctx, propertiesGet, 0, unitInterface, name).Store(&v); err != nil {
		return "", fmt.Errorf("%w: %s of %s: %w", ErrBadUnit, name, obj.Path(), err)
	}
	s, ok := v.Value().(string)
	switch {
	case !ok:
		return "", fmt.Errorf("%w: %s of %s is %s, not a string", ErrBadUnit, name, obj.Path(), v.Signature())
	case len(s) > maxPropertyBytes:
		return "", fmt.Errorf("%w: %s of %s is %d bytes, over %d", ErrBadUnit, name, obj.Path(), len(s), maxPropertyBytes)
	case !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0:
		return "", fmt.Errorf("%w: %s of %s is not valid text", ErrBadUnit, name, obj.Path())
	}
	return s, nil
}

// connect returns the open connection, or opens one. Opening is bounded by
// ctx: the D-Bus handshake (authentication, Hello) is cut short when ctx
// ends.
func (a *Attestor) connect(ctx context.Context) (*dbus.Conn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil && a.conn.Connected() {
		return a.conn, nil
	}
	if a.conn != nil {
		_ = a.closeLocked()
	}
	addr := a.address
	where := "the system bus"
	if addr != "" {
		where = addr
	}
	// The connection lives past this call; only its opening is bound to ctx.
	life, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	var (
		conn *dbus.Conn
		err  error
	)
	if addr == "" {
		conn, err = dbus.ConnectSystemBus(dbus.WithContext(life))
	} else {
		conn, err = dbus.Connect(addr, dbus.WithContext(life))
	}
	if !stop() && err == nil { // ctx ended: the connection is being closed
		_ = conn.Close()
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: connect to %s: %w", ErrBusUnavailable, where, err)
	}
	a.conn, a.cancel = conn, cancel
	return conn, nil
}

// Close closes the D-Bus connection, if one is open.
func (a *Attestor) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil {
		return nil
	}
	return a.closeLocked()
}

func (a *Attestor) closeLocked() error {
	err := a.conn.Close()
	a.cancel()
	a.conn, a.cancel = nil, nil
	return err
}
