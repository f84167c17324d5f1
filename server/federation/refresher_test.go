package federation

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/signet-id/signet/server/etcdserver/etcdtest"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	st    *store.Store
	r     *Refresher
	reg   *prometheus.Registry
	logs  *syncBuffer
	peer  *ca
	ep    *endpoint
	clock *fakeclock.Clock
}

// newFixture runs a refresher over a real store, federated with peer.test
// whose https_spiffe endpoint is a loopback TLS server presenting
// spiffe://peer.test/spire/server; the peer's bundle is stored first (as
// `signet bundle set` would).
func newFixture(t *testing.T, rel func(*Relationship)) *fixture {
	t.Helper()
	st, own := newStore(t)
	f := &fixture{st: st, reg: prometheus.NewRegistry(), logs: &syncBuffer{}, peer: newCA(t, "peer.test"), clock: fakeclock.New(time.Unix(1_800_000_000, 0))}
	f.ep = newEndpoint(t, f.peer.svid(t, "spiffe://peer.test/spire/server"))
	f.ep.serve(f.peer.bundleJSON(t, 10*time.Minute))
	seed, _ := bundlecodec.ToProto(f.peer.bundle(10 * time.Minute))
	if _, err := st.SetBundle(etcdtest.Context(t), seed); err != nil {
		t.Fatal(err)
	}
	r := Relationship{TrustDomain: f.peer.td, URL: f.ep.url(), Profile: ProfileSPIFFE, EndpointID: spiffeid.RequireFromString("spiffe://peer.test/spire/server"), Static: true}
	if rel != nil {
		rel(&r)
	}
	var err error
	f.r, err = New(Config{
		TrustDomain: own, Store: st, NotFound: store.ErrNotFound, Static: []Relationship{r},
		Clock: f.clock, Logger: slog.New(slog.NewTextHandler(f.logs, nil)), Registry: f.reg,
		MinRefresh: time.Second, Retry: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) stored(t *testing.T) *spiffebundle.Bundle {
	t.Helper()
	p, err := f.st.GetBundle(etcdtest.Context(t), f.peer.td)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundlecodec.FromProto(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) count(result string) float64 {
	return metric(f.r.m.refreshes.WithLabelValues("peer.test", result))
}

// TestRefreshStoresRotatedBundle: a fetched bundle that differs from the
// stored one (the peer added a CA) replaces it; an identical one is not
// rewritten.
func TestRefreshStoresRotatedBundle(t *testing.T) {
	f := newFixture(t, nil)
	next := newCA(t, "peer.test")
	rotated := f.peer.bundle(10 * time.Minute)
	rotated.AddX509Authority(next.cert)
	data, _ := rotated.Marshal()
	f.ep.serve(data)
	ctx := etcdtest.Context(t)
	if managed, err := f.r.Refresh(ctx, f.peer.td); err != nil || !managed {
		t.Fatalf("Refresh = %v, %v", managed, err)
	}
	if got := f.stored(t); !got.Equal(rotated) {
		t.Fatalf("stored bundle has %d authorities, want the rotated bundle's %d", len(got.X509Authorities()), len(rotated.X509Authorities()))
	}
	if _, err := f.r.Refresh(ctx, f.peer.td); err != nil {
		t.Fatal(err)
	}
	if got := metric(f.r.m.updates.WithLabelValues("peer.test")); got != 1 {
		t.Fatalf("bundle updates = %v, want 1 (the second fetch was identical)", got)
	}
	if f.count("success") != 2 || f.count("failure") != 0 {
		t.Fatalf("refreshes success=%v failure=%v", f.count("success"), f.count("failure"))
	}
	if got := metric(f.r.m.lastSuccess.WithLabelValues("peer.test")); got != float64(f.clock.Now().Unix()) {
		t.Fatalf("last refresh timestamp = %v, want %d", got, f.clock.Now().Unix())
	}
	if managed, _ := f.r.Refresh(ctx, spiffeid.RequireTrustDomainFromString("stranger.test")); managed {
		t.Fatal("Refresh of a trust domain without relationship reported managed")
	}
}

// TestRefreshBadInputKeepsLastGoodBundle performs each failure a bundle
// endpoint can inflict and checks that the stored bundle is the last good
// one, that the error names the cause, and that the failure is counted
// and logged with the trust domain.
func TestRefreshBadInputKeepsLastGoodBundle(t *testing.T) {
	other := newCA(t, "other.test")
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "https://" + addr
	}()
	manyKeys := func() []byte {
		var b strings.Builder
		b.WriteString(`{"keys":[`)
		for i := range bundlecodec.MaxKeys + 1 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"kty":"EC","use":"jwt-svid","kid":"k%d","crv":"P-256","x":"AA","y":"AA"}`, i)
		}
		b.WriteString(`]}`)
		return []byte(b.String())
	}()
	cases := []struct {
		name  string
		rel   func(*Relationship)
		serve func(f *fixture)
		want  error  // errors.Is, when set
		msg   string // in the error otherwise
	}{
		{name: "endpoint unreachable", rel: func(r *Relationship) { r.URL = closed }, msg: "connection refused"},
		{name: "wrong endpoint SPIFFE ID", rel: func(r *Relationship) { r.EndpointID = spiffeid.RequireFromString("spiffe://peer.test/not-the-server") }, msg: `unexpected ID "spiffe://peer.test/spire/server"`},
		{name: "endpoint certificate from another trust domain", rel: func(r *Relationship) { r.EndpointID = spiffeid.RequireFromString("spiffe://other.test/spire/server") }, want: ErrNoEndpointBundle},
		{name: "bundle for another trust domain", serve: func(f *fixture) { f.ep.serve(other.bundleJSON(t, time.Minute)) }, want: ErrWrongTrustDomain},
		{name: "malformed JSON", serve: func(f *fixture) { f.ep.serve([]byte(`{"keys": [`)) }, msg: "unexpected end of JSON input"},
		{name: "not a bundle", serve: func(f *fixture) { f.ep.serve([]byte(`{"keys": []}`)) }, want: ErrEmptyBundle},
		{name: "huge bundle", serve: func(f *fixture) { f.ep.serve(bytes.Repeat([]byte(" "), bundlecodec.MaxSize+10)) }, want: bundlecodec.ErrTooLarge},
		{name: "too many keys", serve: func(f *fixture) { f.ep.serve(manyKeys) }, want: bundlecodec.ErrTooManyKeys},
		{name: "HTTP error", serve: func(f *fixture) { f.ep.status.Store(500) }, want: ErrBadResponse},
		{name: "https_web against a SPIFFE certificate", rel: func(r *Relationship) { r.Profile, r.EndpointID = ProfileWeb, spiffeid.ID{} }, msg: "certificate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.rel)
			before := f.stored(t)
			if c.serve != nil {
				c.serve(f)
			}
			managed, err := f.r.Refresh(etcdtest.Context(t), f.peer.td)
			if !managed || err == nil {
				t.Fatalf("Refresh = %v, %v; want managed and an error", managed, err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("error %q is not %v", err, c.want)
			}
			if c.msg != "" && !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %q does not say %q", err, c.msg)
			}
			if !f.stored(t).Equal(before) {
				t.Fatal("the stored bundle changed after a failed fetch")
			}
			if f.count("failure") != 1 || f.count("success") != 0 {
				t.Fatalf("refreshes failure=%v success=%v, want 1 and 0", f.count("failure"), f.count("success"))
			}
			if logs := f.logs.String(); !strings.Contains(logs, "trust_domain=peer.test") || !strings.Contains(logs, "keeping the last good bundle") {
				t.Fatalf("failure not logged with the trust domain:\n%s", logs)
			}
			st := f.r.Statuses()
			if len(st) != 1 || st[0].Err == nil {
				t.Fatalf("Statuses = %+v, want the last error", st)
			}
		})
	}
}

// TestRefreshWebPKI: https_web verifies the endpoint with the configured
// roots (a Web PKI certificate for localhost here).
func TestRefreshWebPKI(t *testing.T) {
	webCA := newCA(t, "web-root.test")
	f := newFixture(t, nil)
	ep := newEndpoint(t, webCA.svid(t, "https://localhost/"))
	ep.serve(f.peer.bundleJSON(t, time.Minute))
	roots := x509.NewCertPool()
	roots.AddCert(webCA.cert)
	u := strings.Replace(ep.url(), "127.0.0.1", "localhost", 1)
	r, err := New(Config{
		TrustDomain: spiffeid.RequireTrustDomainFromString("own.test"), Store: f.st, NotFound: store.ErrNotFound,
		Static: []Relationship{{TrustDomain: f.peer.td, URL: u, Profile: ProfileWeb}}, WebRoots: roots,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Refresh(etcdtest.Context(t), f.peer.td); err != nil {
		t.Fatal(err)
	}
	if h, _ := f.stored(t).RefreshHint(); h != time.Minute {
		t.Fatalf("stored refresh hint %v, want the fetched bundle's 1m", h)
	}
}

// TestLoopRefreshesAtRefreshHint drives the loop on a fake clock: the
// first fetch happens at start, the next one only once the served
// bundle's refresh hint has passed, and a failed fetch is retried after
// Retry.
func TestLoopRefreshesAtRefreshHint(t *testing.T) {
	f := newFixture(t, nil)
	f.ep.serve(f.peer.bundleJSON(t, 2*time.Minute))
	ctx, cancel := context.WithCancel(etcdtest.Context(t))
	done := make(chan struct{})
	go func() { defer close(done); f.r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	hit := func(what string) {
		t.Helper()
		select {
		case <-f.ep.hits:
		case <-ctx.Done():
			t.Fatalf("%s: no fetch", what)
		}
	}
	waitDue := func(want time.Time) {
		t.Helper()
		for ctx.Err() == nil {
			if st := f.r.Statuses(); len(st) == 1 && st[0].NextAttempt.Equal(want) {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatal("next attempt never scheduled")
	}
	start := f.clock.Now()
	hit("start")
	waitDue(start.Add(2 * time.Minute))
	select {
	case <-f.ep.hits:
		t.Fatal("fetched again before the refresh hint passed")
	default:
	}
	f.ep.status.Store(503)
	f.clock.Advance(2 * time.Minute)
	hit("after the refresh hint")
	waitDue(start.Add(2*time.Minute + 5*time.Second))
	f.ep.status.Store(200)
	f.clock.Advance(5 * time.Second)
	hit("retry")
	waitDue(start.Add(2*time.Minute + 5*time.Second + 2*time.Minute))
	if f.count("failure") != 1 || f.count("success") != 2 {
		t.Fatalf("refreshes success=%v failure=%v, want 2 and 1", f.count("success"), f.count("failure"))
	}
}

// TestLoopFollowerDoesNotFetch: a replica that does not lead never
// fetches on schedule, but Refresh on demand works.
func TestLoopFollowerDoesNotFetch(t *testing.T) {
	f := newFixture(t, nil)
	f.r.cfg.Leader = func() bool { return false }
	ctx, cancel := context.WithCancel(etcdtest.Context(t))
	done := make(chan struct{})
	go func() { defer close(done); f.r.Run(ctx) }()
	if err := f.clock.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	if err := f.clock.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	select {
	case <-f.ep.hits:
		t.Fatal("a follower fetched on schedule")
	default:
	}
	if _, err := f.r.Refresh(etcdtest.Context(t), f.peer.td); err != nil {
		t.Fatal(err)
	}
}

// metric reads a counter's or gauge's value.
func metric(m prometheus.Metric) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		return -1
	}
	if c := out.GetCounter(); c != nil {
		return c.GetValue()
	}
	return out.GetGauge().GetValue()
}

// TestNewRefusesBadStaticRelationships: relationships from the
// configuration are checked at start.
func TestNewRefusesBadStaticRelationships(t *testing.T) {
	st, own := newStore(t)
	peer := spiffeid.RequireTrustDomainFromString("peer.test")
	for _, c := range []struct {
		rel  Relationship
		want string
	}{
		{Relationship{TrustDomain: own, URL: "https://x", Profile: ProfileWeb}, "own trust domain"},
		{Relationship{TrustDomain: peer, URL: "http://x", Profile: ProfileWeb}, "must be an https URL"},
		{Relationship{TrustDomain: peer, URL: "https://x", Profile: ProfileSPIFFE}, "needs the endpoint SPIFFE ID"},
		{Relationship{TrustDomain: peer, URL: "https://x", Profile: "https_mtls"}, "unknown bundle endpoint profile"},
		{Relationship{URL: "https://x", Profile: ProfileWeb}, "without a trust domain"},
	} {
		if _, err := New(Config{TrustDomain: own, Store: st, Static: []Relationship{c.rel}}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.rel, err, c.want)
		}
	}
}
