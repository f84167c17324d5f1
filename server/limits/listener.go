package limits

import (
	"net"
	"sync"
	"time"
)

// overGrace is how long a connection over the per-IP limit is kept, so that
// its first RPC gets a ResourceExhausted status naming the limit instead of
// a bare reset; maxOverPerIP such connections per IP are kept at once, the
// rest are closed on accept.
const (
	overGrace    = 2 * time.Second
	maxOverPerIP = 8
)

// connTable counts open connections per source IP.
type connTable struct {
	max  int
	mu   sync.Mutex
	open map[string]int
	// overOpen counts the connections over the limit held per IP; over
	// holds their remote addresses.
	overOpen map[string]int
	over     map[string]bool
}

func (t *connTable) isOver(remote string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.over[remote]
}

// admit records a new connection. It returns whether it is within the
// limit, and whether an over-limit connection may be kept for a moment to
// report the refusal.
func (t *connTable) admit(ip, remote string) (ok, keep bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.max < 0 || t.open[ip] < t.max {
		t.open[ip]++
		return true, false
	}
	if t.overOpen == nil {
		t.overOpen = map[string]int{}
	}
	if t.overOpen[ip] >= maxOverPerIP {
		return false, false
	}
	t.overOpen[ip]++
	t.over[remote] = true
	return false, true
}

func (t *connTable) release(ip, remote string, within bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if within {
		if t.open[ip]--; t.open[ip] <= 0 {
			delete(t.open, ip)
		}
		return
	}
	delete(t.over, remote)
	if t.overOpen[ip]--; t.overOpen[ip] <= 0 {
		delete(t.overOpen, ip)
	}
}

// Listener wraps the agent listener with the per-IP connection limit.
func (l *Limiter) Listener(inner net.Listener) net.Listener {
	return &listener{Listener: inner, l: l}
}

type listener struct {
	net.Listener
	l *Limiter
}

func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip, remote := hostIP(c.RemoteAddr()), c.RemoteAddr().String()
		ok, keep := ln.l.conns.admit(ip, remote)
		if ok {
			return &conn{Conn: c, release: sync.OnceFunc(func() { ln.l.conns.release(ip, remote, true) })}, nil
		}
		ln.l.refused.WithLabelValues("max_conns_per_ip").Inc()
		ln.l.log.Debug("connection over the per-IP limit", "remote", remote, "limit", ln.l.cfg.MaxConnsPerIP)
		if !keep {
			c.Close()
			continue
		}
		oc := &conn{Conn: c, release: sync.OnceFunc(func() { ln.l.conns.release(ip, remote, false) })}
		time.AfterFunc(overGrace, func() { oc.Close() })
		return oc, nil
	}
}

type conn struct {
	net.Conn
	release func()
}

func (c *conn) Close() error {
	c.release()
	return c.Conn.Close()
}
