package scheduler

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// cutProxy forwards loopback TCP connections to one etcd member until Cut,
// which severs every connection at once, as a crash or a partition would.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	cut    bool
	wg     sync.WaitGroup

	// network is the target's ("unix" for a single member's socket) and
	// scheme the proxy's URL scheme (https for a TLS cluster member).
	network, scheme string
}

func newCutProxy(t testing.TB, endpoint string) *cutProxy {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: u.Host, network: "tcp", scheme: "http"}
	switch u.Scheme {
	case "unix":
		p.target, p.network = u.Path, "unix"
	case "https":
		p.scheme = "https"
	}
	p.wg.Go(p.accept)
	t.Cleanup(p.Cut)
	return p
}

// Endpoint is the proxy's client URL.
func (p *cutProxy) Endpoint() string { return p.scheme + "://" + p.ln.Addr().String() }

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial(p.network, p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			return
		}
		p.wg.Go(func() { io.Copy(up, c); up.Close() })
		p.wg.Go(func() { io.Copy(c, up); c.Close() })
	}
}

func (p *cutProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, cs...)
	return true
}

// Cut closes the listener and every proxied connection.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	p.cut = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}
