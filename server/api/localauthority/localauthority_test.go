package localauthority_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	cav1 "github.com/signet-id/signet/proto/signet/ca/v1"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/server/api/localauthority"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// pushes records what the service pushed to agents.
type pushes struct {
	mu       sync.Mutex
	bundles  []uint64
	renewals int
}

func (p *pushes) BundleChanged(seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bundles = append(p.bundles, seq)
}

func (p *pushes) RenewNow(context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.renewals++
}

func (p *pushes) snapshot() (last uint64, n, renewals int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.bundles) > 0 {
		last = p.bundles[len(p.bundles)-1]
	}
	return last, len(p.bundles), p.renewals
}

// counts is a fixed table of SVID counts per authority.
type counts map[string]int

func (c counts) CountSVIDsByAuthority(_ context.Context, id string, _ time.Time) (int, error) {
	return c[id], nil
}

// events records lifecycle events.
type events struct {
	mu    sync.Mutex
	kinds []string
}

func (e *events) AuthorityChanged(_ context.Context, kind eventlog.Kind, _ ca.AuthorityInfo) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.kinds = append(e.kinds, string(kind))
}

type env struct {
	m   *ca.Manager
	p   *pushes
	ev  *events
	la  localauthorityv1.LocalAuthorityClient
	cas cav1.CAClient
}

func start(t *testing.T, cfg localauthority.Config, upstream ...ca.UpstreamAuthority) *env {
	t.Helper()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ccfg := ca.Config{
		TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
		Path:        filepath.Join(t.TempDir(), "ca.json"),
		Now:         func() time.Time { return now },
	}
	if len(upstream) > 0 {
		ccfg.Upstream = upstream[0]
	}
	m, err := ca.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{m: m, p: &pushes{}, ev: &events{}}
	cfg.CA, cfg.Notifier, cfg.Events = m, e.p, e.ev
	cfg.Now = func() time.Time { return now }
	g := grpc.NewServer()
	localauthority.New(cfg).Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.la = localauthorityv1.NewLocalAuthorityClient(conn)
	e.cas = cav1.NewCAClient(conn)
	return e
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// call is one RPC of a scripted sequence and its expected answer.
type call struct {
	name    string
	do      func() error
	code    codes.Code
	msg     string // exact status message when code != OK
	pushed  bool   // a bundle change was pushed
	renewed bool   // agents were told to renew now
}

func run(t *testing.T, e *env, calls []call) {
	t.Helper()
	for _, c := range calls {
		_, nBefore, rBefore := e.p.snapshot()
		err := c.do()
		if got := status.Code(err); got != c.code {
			t.Fatalf("%s: code %v (%v), want %v", c.name, got, err, c.code)
		}
		if c.code != codes.OK {
			if got := status.Convert(err).Message(); got != c.msg {
				t.Fatalf("%s: message %q, want %q", c.name, got, c.msg)
			}
		}
		last, n, r := e.p.snapshot()
		if (n > nBefore) != c.pushed {
			t.Fatalf("%s: bundle pushed = %v, want %v", c.name, n > nBefore, c.pushed)
		}
		if c.pushed {
			if seq, _ := e.m.Bundle().SequenceNumber(); last != seq {
				t.Fatalf("%s: pushed sequence %d, bundle has %d", c.name, last, seq)
			}
		}
		if (r > rBefore) != c.renewed {
			t.Fatalf("%s: renew-now pushed = %v, want %v", c.name, r > rBefore, c.renewed)
		}
	}
}

func activeID(t *testing.T, list []ca.AuthorityInfo) string {
	t.Helper()
	for _, a := range list {
		if a.Status == ca.StatusActive {
			return a.ID
		}
	}
	t.Fatal("no active authority")
	return ""
}

func TestX509Lifecycle(t *testing.T) {
	e := start(t, localauthority.Config{})
	c := ctx(t)
	first := activeID(t, e.m.X509Authorities())
	var prepared string

	state := func() *localauthorityv1.GetX509AuthorityStateResponse {
		t.Helper()
		r, err := e.la.GetX509AuthorityState(c, &localauthorityv1.GetX509AuthorityStateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if s := state(); s.Active.GetAuthorityId() != first || s.Prepared != nil || s.Old != nil {
		t.Fatalf("initial state %v", s)
	}
	activate := func(id string) func() error {
		return func() error {
			_, err := e.la.ActivateX509Authority(c, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: id})
			return err
		}
	}
	taint := func(id string) func() error {
		return func() error {
			r, err := e.la.TaintX509Authority(c, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: id})
			if err == nil && (r.TaintedAuthority.AuthorityId != id || r.TaintedAuthority.ExpiresAt == 0) {
				t.Fatalf("taint response %v", r)
			}
			return err
		}
	}
	revoke := func(id string) func() error {
		return func() error {
			r, err := e.la.RevokeX509Authority(c, &localauthorityv1.RevokeX509AuthorityRequest{AuthorityId: id})
			if err == nil && r.RevokedAuthority.AuthorityId != id {
				t.Fatalf("revoke response %v", r)
			}
			return err
		}
	}
	run(t, e, []call{
		{name: "taint the active one", do: taint(first), code: codes.InvalidArgument, msg: "unable to taint current local authority"},
		{name: "revoke the active one", do: revoke(first), code: codes.InvalidArgument, msg: "invalid authority ID: unable to use current authority"},
		{name: "prepare", do: func() error {
			r, err := e.la.PrepareX509Authority(c, &localauthorityv1.PrepareX509AuthorityRequest{})
			if err == nil {
				prepared = r.PreparedAuthority.AuthorityId
				if prepared == "" || prepared == first || r.PreparedAuthority.ExpiresAt == 0 {
					t.Fatalf("prepare response %v", r)
				}
			}
			return err
		}, pushed: true},
	})
	if s := state(); s.Active.GetAuthorityId() != first || s.Prepared.GetAuthorityId() != prepared || s.Old != nil {
		t.Fatalf("state after prepare %v", s)
	}
	run(t, e, []call{
		{name: "taint the prepared one", do: taint(prepared), code: codes.InvalidArgument, msg: "only Old local authorities can be tainted: unsupported local authority status: PREPARED"},
		{name: "revoke the prepared one", do: revoke(prepared), code: codes.InvalidArgument, msg: "invalid authority ID: only Old local authority can be revoked"},
		{name: "activate without ID", do: activate(""), code: codes.InvalidArgument, msg: "no authority ID provided"},
		{name: "activate unknown", do: activate("00ff"), code: codes.InvalidArgument, msg: "unexpected authority ID"},
		{name: "activate the active one", do: activate(first), code: codes.InvalidArgument, msg: "unexpected authority ID"},
		{name: "activate", do: activate(prepared), pushed: true},
	})
	if s := state(); s.Active.GetAuthorityId() != prepared || s.Prepared != nil || s.Old.GetAuthorityId() != first {
		t.Fatalf("state after activate %v", s)
	}
	run(t, e, []call{
		{name: "activate the old one", do: activate(first), code: codes.Internal, msg: "only Prepared authorities can be activated: unsupported local authority status: OLD"},
		{name: "revoke untainted", do: revoke(first), code: codes.Internal, msg: "failed to revoke X.509 authority: it is not possible to revoke an untainted root CA"},
		{name: "taint without ID", do: taint(""), code: codes.InvalidArgument, msg: "no authority ID provided"},
		{name: "taint unknown", do: taint("00ff"), code: codes.InvalidArgument, msg: "unexpected authority ID"},
		{name: "taint the old one", do: taint(first), pushed: true, renewed: true},
		{name: "taint it again", do: taint(first), code: codes.Internal, msg: "failed to taint X.509 authority: root CA is already tainted"},
		{name: "revoke without ID", do: revoke(""), code: codes.InvalidArgument, msg: "invalid authority ID: no authority ID provided"},
		{name: "revoke unknown", do: revoke("00ff"), code: codes.InvalidArgument, msg: "invalid authority ID: only Old local authority can be revoked"},
		{name: "revoke the tainted one", do: revoke(first), pushed: true},
		{name: "revoke it again", do: revoke(first), code: codes.InvalidArgument, msg: "invalid authority ID: only Old local authority can be revoked"},
		{name: "taint upstream", do: func() error {
			_, err := e.la.TaintX509UpstreamAuthority(c, &localauthorityv1.TaintX509UpstreamAuthorityRequest{SubjectKeyId: first})
			return err
		}, code: codes.FailedPrecondition, msg: "upstream authority is not configured"},
		{name: "revoke upstream", do: func() error {
			_, err := e.la.RevokeX509UpstreamAuthority(c, &localauthorityv1.RevokeX509UpstreamAuthorityRequest{SubjectKeyId: first})
			return err
		}, code: codes.FailedPrecondition, msg: "upstream authority is not configured"},
	})
	for _, cert := range e.m.Bundle().X509Authorities() {
		if ca.X509AuthorityID(cert) == first {
			t.Fatal("revoked authority still in the bundle")
		}
	}
	want := []string{"ca.prepared", "ca.activated", "ca.tainted", "ca.revoked"}
	if strings.Join(e.ev.kinds, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v", e.ev.kinds, want)
	}
}

func TestJWTLifecycle(t *testing.T) {
	e := start(t, localauthority.Config{})
	c := ctx(t)
	first := activeID(t, e.m.JWTAuthorities())
	var prepared string
	activate := func(id string) func() error {
		return func() error {
			_, err := e.la.ActivateJWTAuthority(c, &localauthorityv1.ActivateJWTAuthorityRequest{AuthorityId: id})
			return err
		}
	}
	taint := func(id string) func() error {
		return func() error {
			_, err := e.la.TaintJWTAuthority(c, &localauthorityv1.TaintJWTAuthorityRequest{AuthorityId: id})
			return err
		}
	}
	revoke := func(id string) func() error {
		return func() error {
			_, err := e.la.RevokeJWTAuthority(c, &localauthorityv1.RevokeJWTAuthorityRequest{AuthorityId: id})
			return err
		}
	}
	run(t, e, []call{
		{name: "taint the active key", do: taint(first), code: codes.InvalidArgument, msg: "unable to taint current local authority"},
		{name: "prepare", do: func() error {
			r, err := e.la.PrepareJWTAuthority(c, &localauthorityv1.PrepareJWTAuthorityRequest{})
			if err == nil {
				prepared = r.PreparedAuthority.AuthorityId
			}
			return err
		}, pushed: true},
	})
	run(t, e, []call{
		{name: "revoke the prepared key", do: revoke(prepared), code: codes.InvalidArgument, msg: "invalid authority ID: unable to use a prepared key"},
		{name: "taint the prepared key", do: taint(prepared), code: codes.InvalidArgument, msg: "only Old local authorities can be tainted: unsupported local authority status: PREPARED"},
		{name: "activate unknown", do: activate("nope"), code: codes.InvalidArgument, msg: "unexpected authority ID"},
		{name: "activate", do: activate(prepared), pushed: true},
		{name: "activate the old key", do: activate(first), code: codes.Internal, msg: "only Prepared authorities can be activated: unsupported local authority status: OLD"},
		{name: "revoke the active key", do: revoke(prepared), code: codes.InvalidArgument, msg: "invalid authority ID: unable to use current authority"},
		{name: "revoke unknown", do: revoke("nope"), code: codes.InvalidArgument, msg: "invalid authority ID: no JWT authority found with provided authority ID"},
		{name: "revoke untainted", do: revoke(first), code: codes.Internal, msg: "failed to revoke JWT authority: it is not possible to revoke an untainted key"},
		{name: "taint the old key", do: taint(first), pushed: true, renewed: true},
		{name: "taint it again", do: taint(first), code: codes.Internal, msg: "failed to taint JWT authority: key is already tainted"},
		{name: "revoke the tainted key", do: revoke(first), pushed: true},
	})
	s, err := e.la.GetJWTAuthorityState(c, &localauthorityv1.GetJWTAuthorityStateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Active.GetAuthorityId() != prepared || s.Prepared != nil || s.Old != nil {
		t.Fatalf("final state %v", s)
	}
	if _, ok := e.m.Bundle().FindJWTAuthority(first); ok {
		t.Fatal("revoked key still in the bundle")
	}
}

func TestCAService(t *testing.T) {
	e := start(t, localauthority.Config{Counter: counts{}})
	c := ctx(t)
	first := activeID(t, e.m.X509Authorities())
	p, err := e.m.PrepareX509()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.ActivateX509(p.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.TaintX509(first); err != nil {
		t.Fatal(err)
	}
	r, err := e.cas.ListAuthorities(c, &cav1.ListAuthoritiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.X509Authorities) != 2 || len(r.JwtAuthorities) != 1 {
		t.Fatalf("authorities %v", r)
	}
	newest, old := r.X509Authorities[0], r.X509Authorities[1]
	if newest.AuthorityId != p.ID || newest.Status != cav1.Authority_STATUS_ACTIVE || newest.Tainted {
		t.Fatalf("newest %v", newest)
	}
	if old.AuthorityId != first || old.Status != cav1.Authority_STATUS_OLD || !old.Tainted || old.ExpiresAt <= old.NotBefore {
		t.Fatalf("old %v", old)
	}
	if seq, _ := e.m.Bundle().SequenceNumber(); r.BundleSequence != seq {
		t.Fatalf("sequence %d, want %d", r.BundleSequence, seq)
	}
}

func TestCountSVIDsByAuthority(t *testing.T) {
	e := start(t, localauthority.Config{Counter: counts{"ab01": 7}})
	c := ctx(t)
	cases := []struct {
		id   string
		code codes.Code
		want int64
	}{
		{"ab01", codes.OK, 7},
		{"AB01", codes.OK, 7}, // IDs are compared in lower case, as SPIRE does for SKIDs
		{"cd02", codes.OK, 0},
		{"", codes.InvalidArgument, 0},
		{"not/hex", codes.InvalidArgument, 0},
	}
	for _, tc := range cases {
		r, err := e.cas.CountSVIDsByAuthority(c, &cav1.CountSVIDsByAuthorityRequest{AuthorityId: tc.id})
		if status.Code(err) != tc.code || r.GetCount() != tc.want {
			t.Errorf("count %q: %v, %v; want %d, %v", tc.id, r.GetCount(), err, tc.want, tc.code)
		}
	}
	noCounter := start(t, localauthority.Config{})
	if _, err := noCounter.cas.CountSVIDsByAuthority(c, &cav1.CountSVIDsByAuthorityRequest{AuthorityId: "ab01"}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("without a counter: %v, want Unimplemented", err)
	}
}
