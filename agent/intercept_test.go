package agent_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/clock/fakeclock"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// interceptor listens on one loopback address. While a TLS certificate is
// set it terminates every connection itself with that certificate (a
// man in the middle); otherwise it forwards to the real server.
type interceptor struct {
	l    net.Listener
	real string
	cert atomic.Pointer[tls.Certificate]
	wg   sync.WaitGroup
}

func newInterceptor(t *testing.T, real string) *interceptor {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &interceptor{l: l, real: real}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { l.Close(); p.wg.Wait() })
	return p
}

func (p *interceptor) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			if cert := p.cert.Load(); cert != nil {
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS13})
				_ = tc.SetDeadline(time.Now().Add(deliveryBound))
				_ = tc.Handshake() // the agent refuses it
				return
			}
			up, err := net.Dial("tcp", p.real)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
			<-done
		}()
	}
}

// leafCert returns a TLS certificate for the SPIFFE ID uri, signed by
// parent/parentKey, or self-signed when parent is nil.
func leafCert(t *testing.T, uri string, parent *x509.Certificate, parentKey crypto.Signer) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	signer := crypto.Signer(key)
	if parent == nil {
		parent = tmpl
	} else {
		signer = parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestInterceptedFirstContactDoesNotStopAgent performs the attack of
// someone who can intercept the agent's connection at its first start:
// the server address answers first with a self-signed certificate naming
// the server, then with a certificate the real CA signed for a workload
// (not the server). Neither stops the agent: it logs each at ERROR with a
// server_verification_failed security event, tells workloads why it is
// not attested, backs off, and attests as soon as the real server answers
// on the same address.
func TestInterceptedFirstContactDoesNotStopAgent(t *testing.T) {
	e := start(t)
	p := newInterceptor(t, e.srv.AgentAddr().String())
	caCert, caKey := e.srv.CA().X509Authority()
	forged := []*tls.Certificate{
		leafCert(t, "spiffe://example.org/spire/server", nil, nil),
		leafCert(t, "spiffe://example.org/web", caCert, caKey),
	}
	clk := fakeclock.New(time.Now())
	tok := e.newToken(t)
	r := e.runAgent(t, shortDir(t), func(c *agent.Config) {
		c.ServerAddresses = []string{p.l.Addr().String()}
		c.JoinToken = tok
		c.Clock = clk
	})
	p.cert.Store(forged[0])
	<-r.Ready()
	for i := range 4 {
		p.cert.Store(forged[i%2])
		if err := clk.WaitForTimers(testContext(t), 1); err != nil {
			t.Fatalf("attempt %d: the agent never backed off: %v; logs:\n%s", i, err, r.logs)
		}
		select {
		case err := <-r.done:
			t.Fatalf("attempt %d: the agent stopped: %v; logs:\n%s", i, err, r.logs)
		default:
		}
		_, err := fetchX509(t, r.cfg.SocketPath)
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "no server verifies") {
			t.Fatalf("attempt %d: FetchX509SVID: %v; want Unavailable saying no server verifies", i, err)
		}
		due, _ := clk.Next()
		if i < 3 {
			clk.Advance(due.Sub(clk.Now()))
		}
	}
	logs := r.logs.String()
	for _, w := range []string{"level=ERROR", "event=server_verification_failed", "category=security",
		"peer=" + p.l.Addr().String(), "unknown authority", `want \"spiffe://example.org/spire/server\"`} {
		if !strings.Contains(logs, w) {
			t.Errorf("logs do not say %s:\n%s", w, logs)
		}
	}
	// The real server now answers on the same address.
	p.cert.Store(nil)
	due, _ := clk.Next()
	clk.Advance(due.Sub(clk.Now()))
	r.waitAttested(t, tokenID(tok))
}

// TestResetServerCachedAgentKeepsTrying: an agent attested to a server
// that was then reset (a new CA, same trust domain) cannot verify it with
// its cached bundle. It does not stop (that would hand a way to stop it
// to anyone who intercepts the connection): it logs at ERROR how to
// bootstrap again (remove the data directory, the new bundle and a new
// token) and retries with backoff.
func TestResetServerCachedAgentKeepsTrying(t *testing.T) {
	old := start(t)
	dir := shortDir(t)
	tok := old.newToken(t)
	r := old.runAgent(t, dir, func(c *agent.Config) { c.JoinToken = tok })
	r.waitAttested(t, tokenID(tok))
	waitFile(t, r.cfg.DataDir+"/svid-cache.json")
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	reset := start(t)
	clk := fakeclock.New(time.Now())
	oldBundle := old.srv.CA().Bundle().X509Authorities()
	r = reset.runAgent(t, dir, func(c *agent.Config) {
		c.JoinToken = reset.newToken(t)
		c.TrustBundle = oldBundle
		c.Clock = clk
	})
	<-r.Ready()
	for i := range 2 {
		if err := clk.WaitForTimers(testContext(t), 1); err != nil {
			t.Fatalf("attempt %d: the agent never backed off: %v", i, err)
		}
		select {
		case err := <-r.done:
			t.Fatalf("attempt %d: the agent stopped: %v; logs:\n%s", i, err, r.logs)
		default:
		}
		due, _ := clk.Next()
		clk.Advance(due.Sub(clk.Now()))
	}
	logs := r.logs.String()
	for _, w := range []string{"level=ERROR", "no server verifies", "remove its data directory " + r.cfg.DataDir, "--trust-bundle",
		"event=server_verification_failed"} {
		if !strings.Contains(logs, w) {
			t.Errorf("logs do not say %q:\n%s", w, logs)
		}
	}
}
