package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var authTD = spiffeid.RequireTrustDomainFromString("authority.test")

// authClock is a manual clock for lifecycle tests.
type authClock struct{ t time.Time }

func (c *authClock) now() time.Time { return c.t }

func newAuthManager(t *testing.T, path string) (*ca.Manager, *authClock) {
	t.Helper()
	clk := &authClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	m, err := ca.New(ca.Config{TrustDomain: authTD, Path: path, Now: clk.now, CATTL: 6 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return m, clk
}

// ops adapts the X.509 and JWT admin operations to one shape so that the
// tables below run for both kinds.
type ops struct {
	kind     ca.Kind
	list     func(*ca.Manager) []ca.AuthorityInfo
	prepare  func(*ca.Manager) (ca.AuthorityInfo, error)
	activate func(*ca.Manager, string) (ca.AuthorityInfo, error)
	taint    func(*ca.Manager, string) (ca.AuthorityInfo, error)
	revoke   func(*ca.Manager, string) (ca.AuthorityInfo, error)
	inBundle func(*ca.Manager, string) bool
}

var kinds = []ops{
	{
		kind:     ca.KindX509,
		list:     (*ca.Manager).X509Authorities,
		prepare:  (*ca.Manager).PrepareX509,
		activate: (*ca.Manager).ActivateX509,
		taint:    (*ca.Manager).TaintX509,
		revoke:   (*ca.Manager).RevokeX509,
		inBundle: func(m *ca.Manager, id string) bool {
			for _, c := range m.Bundle().X509Authorities() {
				if ca.X509AuthorityID(c) == id {
					return true
				}
			}
			return false
		},
	},
	{
		kind:     ca.KindJWT,
		list:     (*ca.Manager).JWTAuthorities,
		prepare:  (*ca.Manager).PrepareJWT,
		activate: (*ca.Manager).ActivateJWT,
		taint:    (*ca.Manager).TaintJWT,
		revoke:   (*ca.Manager).RevokeJWT,
		inBundle: func(m *ca.Manager, id string) bool {
			_, ok := m.Bundle().FindJWTAuthority(id)
			return ok
		},
	},
}

func byStatus(list []ca.AuthorityInfo, st ca.Status) []ca.AuthorityInfo {
	var out []ca.AuthorityInfo
	for _, a := range list {
		if a.Status == st {
			out = append(out, a)
		}
	}
	return out
}

func seq(t *testing.T, m *ca.Manager) uint64 {
	t.Helper()
	s, ok := m.Bundle().SequenceNumber()
	if !ok {
		t.Fatal("bundle has no sequence number")
	}
	return s
}

func drained(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestAdminLifecycle walks prepare → re-prepare → activate → taint →
// revoke for each kind and checks, after every step, the slots, the
// bundle, the sequence number, the change notification and what a
// restarted manager loads from disk.
func TestAdminLifecycle(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k.kind), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ca.json")
			m, clk := newAuthManager(t, path)
			changed, stop := m.Changed()
			defer stop()

			first := byStatus(k.list(m), ca.StatusActive)
			if len(first) != 1 || len(k.list(m)) != 1 {
				t.Fatalf("fresh manager: %+v, want one active authority", k.list(m))
			}
			a := first[0]
			if a.ID == "" || a.Tainted {
				t.Fatalf("active authority %+v", a)
			}

			type step struct {
				name string
				do   func() (ca.AuthorityInfo, error)
				// want: ID -> status; IDs not listed must be gone.
				want    func(prepared string) map[string]ca.Status
				tainted string
			}
			var p1, p2 ca.AuthorityInfo
			steps := []step{
				{name: "prepare", do: func() (ca.AuthorityInfo, error) {
					var err error
					p1, err = k.prepare(m)
					return p1, err
				}, want: func(string) map[string]ca.Status {
					return map[string]ca.Status{a.ID: ca.StatusActive, p1.ID: ca.StatusPrepared}
				}},
				{name: "prepare replaces the prepared one", do: func() (ca.AuthorityInfo, error) {
					clk.t = clk.t.Add(time.Minute)
					var err error
					p2, err = k.prepare(m)
					return p2, err
				}, want: func(string) map[string]ca.Status {
					return map[string]ca.Status{a.ID: ca.StatusActive, p2.ID: ca.StatusPrepared}
				}},
				{name: "activate", do: func() (ca.AuthorityInfo, error) { return k.activate(m, p2.ID) },
					want: func(string) map[string]ca.Status {
						return map[string]ca.Status{a.ID: ca.StatusOld, p2.ID: ca.StatusActive}
					}},
				{name: "taint the old one", do: func() (ca.AuthorityInfo, error) { return k.taint(m, a.ID) },
					want: func(string) map[string]ca.Status {
						return map[string]ca.Status{a.ID: ca.StatusOld, p2.ID: ca.StatusActive}
					}, tainted: a.ID},
				{name: "revoke the tainted one", do: func() (ca.AuthorityInfo, error) { return k.revoke(m, a.ID) },
					want: func(string) map[string]ca.Status {
						return map[string]ca.Status{p2.ID: ca.StatusActive}
					}},
			}
			for _, s := range steps {
				before := seq(t, m)
				drained(changed)
				got, err := s.do()
				if err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				if got.ID == "" || got.Kind != k.kind {
					t.Fatalf("%s: returned %+v", s.name, got)
				}
				if after := seq(t, m); after != before+1 {
					t.Fatalf("%s: bundle sequence %d -> %d, want +1", s.name, before, after)
				}
				if !drained(changed) {
					t.Fatalf("%s: no change notification", s.name)
				}
				want := s.want("")
				reloaded, err := ca.New(ca.Config{TrustDomain: authTD, Path: path, Now: clk.now, CATTL: 6 * time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				for _, mm := range []*ca.Manager{m, reloaded} {
					list := k.list(mm)
					if len(list) != len(want) {
						t.Fatalf("%s: %d authorities %+v, want %v", s.name, len(list), list, want)
					}
					for _, info := range list {
						st, ok := want[info.ID]
						if !ok || st != info.Status {
							t.Fatalf("%s: authority %s is %q, want %v", s.name, info.ID, info.Status, want)
						}
						if info.Tainted != (info.ID == s.tainted) {
							t.Fatalf("%s: authority %s tainted=%v", s.name, info.ID, info.Tainted)
						}
						if !k.inBundle(mm, info.ID) {
							t.Fatalf("%s: authority %s missing from the bundle", s.name, info.ID)
						}
					}
					if len(byStatus(list, ca.StatusActive)) != 1 {
						t.Fatalf("%s: not exactly one active authority: %+v", s.name, list)
					}
				}
				if s.name == "prepare replaces the prepared one" && k.inBundle(m, p1.ID) {
					t.Fatal("replaced prepared authority still in the bundle")
				}
				if s.name == "revoke the tainted one" && k.inBundle(m, a.ID) {
					t.Fatal("revoked authority still in the bundle")
				}
			}
		})
	}
}

// TestAdminRefusals checks every refused transition: the typed error, its
// reason, and that nothing changed (slots, sequence, notification).
func TestAdminRefusals(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k.kind), func(t *testing.T) {
			m, _ := newAuthManager(t, filepath.Join(t.TempDir(), "ca.json"))
			// Build: old (untainted) O1, old tainted O2, active A, prepared P.
			o1 := byStatus(k.list(m), ca.StatusActive)[0]
			mustDo := func(info ca.AuthorityInfo, err error) ca.AuthorityInfo {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				return info
			}
			o2 := mustDo(k.prepare(m))
			mustDo(k.activate(m, o2.ID))
			act := mustDo(k.prepare(m))
			mustDo(k.activate(m, act.ID))
			mustDo(k.taint(m, o2.ID))
			p := mustDo(k.prepare(m))

			cases := []struct {
				name   string
				do     func() (ca.AuthorityInfo, error)
				reason error
				status ca.Status
			}{
				{"activate empty ID", func() (ca.AuthorityInfo, error) { return k.activate(m, "") }, ca.ErrNoAuthorityID, ""},
				{"activate unknown", func() (ca.AuthorityInfo, error) { return k.activate(m, "nope") }, ca.ErrAuthorityNotFound, ""},
				{"activate active", func() (ca.AuthorityInfo, error) { return k.activate(m, act.ID) }, ca.ErrActiveAuthority, ca.StatusActive},
				{"activate old", func() (ca.AuthorityInfo, error) { return k.activate(m, o1.ID) }, ca.ErrNotPrepared, ca.StatusOld},
				{"taint empty ID", func() (ca.AuthorityInfo, error) { return k.taint(m, "") }, ca.ErrNoAuthorityID, ""},
				{"taint unknown", func() (ca.AuthorityInfo, error) { return k.taint(m, "nope") }, ca.ErrAuthorityNotFound, ""},
				{"taint active", func() (ca.AuthorityInfo, error) { return k.taint(m, act.ID) }, ca.ErrActiveAuthority, ca.StatusActive},
				{"taint prepared", func() (ca.AuthorityInfo, error) { return k.taint(m, p.ID) }, ca.ErrNotOld, ca.StatusPrepared},
				{"taint tainted", func() (ca.AuthorityInfo, error) { return k.taint(m, o2.ID) }, ca.ErrAlreadyTainted, ca.StatusOld},
				{"revoke empty ID", func() (ca.AuthorityInfo, error) { return k.revoke(m, "") }, ca.ErrNoAuthorityID, ""},
				{"revoke unknown", func() (ca.AuthorityInfo, error) { return k.revoke(m, "nope") }, ca.ErrAuthorityNotFound, ""},
				{"revoke active", func() (ca.AuthorityInfo, error) { return k.revoke(m, act.ID) }, ca.ErrActiveAuthority, ca.StatusActive},
				{"revoke prepared", func() (ca.AuthorityInfo, error) { return k.revoke(m, p.ID) }, ca.ErrNotOld, ca.StatusPrepared},
				{"revoke untainted old", func() (ca.AuthorityInfo, error) { return k.revoke(m, o1.ID) }, ca.ErrNotTainted, ca.StatusOld},
			}
			changed, stop := m.Changed()
			defer stop()
			for _, c := range cases {
				before, beforeSeq := k.list(m), seq(t, m)
				_, err := c.do()
				var te *ca.TransitionError
				if !errors.As(err, &te) {
					t.Fatalf("%s: error %v, want a *ca.TransitionError", c.name, err)
				}
				if !errors.Is(err, c.reason) || te.Status != c.status || te.Kind != k.kind {
					t.Fatalf("%s: error %v (status %q), want reason %v, status %q", c.name, err, te.Status, c.reason, c.status)
				}
				after := k.list(m)
				if len(after) != len(before) {
					t.Fatalf("%s: authorities changed: %+v -> %+v", c.name, before, after)
				}
				for i := range after {
					if after[i] != before[i] {
						t.Fatalf("%s: authority changed: %+v -> %+v", c.name, before[i], after[i])
					}
				}
				if seq(t, m) != beforeSeq {
					t.Fatalf("%s: bundle sequence changed", c.name)
				}
				if drained(changed) {
					t.Fatalf("%s: change notified", c.name)
				}
			}
		})
	}
}

// TestRotateAfterAdminTransitions checks that the clock-driven lifecycle
// carries on from manual transitions: a manually activated authority is
// not replaced early, and a tainted old authority leaves the bundle when it
// expires.
func TestRotateAfterAdminTransitions(t *testing.T) {
	m, clk := newAuthManager(t, "")
	old, _ := m.X509Authority()
	clk.t = clk.t.Add(time.Hour)
	p, err := m.PrepareX509()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.ActivateX509(p.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.TaintX509(ca.X509AuthorityID(old)); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		advance   time.Duration
		wantSlots int
		wantOld   bool
	}{
		{time.Minute, 2, true},    // 1h01m: nothing due
		{4 * time.Hour, 3, true},  // 5h01m: old still valid; new one past half-life -> next prepared
		{time.Hour, 2, false},     // 6h01m: old expired -> dropped; <1h left of the new one -> next activated
		{2 * time.Hour, 2, false}, // 8h01m: the manual one expired -> dropped; next past half-life -> prepared
		{time.Hour, 2, false},     // 9h01m: 2h left of the active: nothing due
	}
	for i, s := range steps {
		clk.t = clk.t.Add(s.advance)
		if _, err := m.Rotate(); err != nil {
			t.Fatal(err)
		}
		list := m.X509Authorities()
		if len(list) != s.wantSlots {
			t.Fatalf("step %d: %d authorities %+v, want %d", i, len(list), list, s.wantSlots)
		}
		found := false
		for _, a := range list {
			if a.ID == ca.X509AuthorityID(old) {
				found = true
				if !a.Tainted {
					t.Fatalf("step %d: old authority lost its taint", i)
				}
			}
		}
		if found != s.wantOld {
			t.Fatalf("step %d: old authority present = %v, want %v", i, found, s.wantOld)
		}
	}
	cur, _ := m.X509Authority()
	if ca.X509AuthorityID(cur) == p.ID {
		t.Fatal("manually activated authority was not rotated out on schedule")
	}
}

// TestAdminChangeUndoneWhenNotPersisted makes the state file unwritable
// and checks that a refused write leaves the manager as it was.
func TestAdminChangeUndoneWhenNotPersisted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	m, _ := newAuthManager(t, filepath.Join(dir, "ca.json"))
	p, err := m.PrepareX509()
	if err != nil {
		t.Fatal(err)
	}
	// Replace the state directory by a file: every save now fails.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	before, beforeSeq := m.X509Authorities(), seq(t, m)
	if _, err := m.ActivateX509(p.ID); err == nil {
		t.Fatal("activate succeeded without persisting")
	}
	if _, err := m.PrepareX509(); err == nil {
		t.Fatal("prepare succeeded without persisting")
	}
	after := m.X509Authorities()
	if len(after) != len(before) || seq(t, m) != beforeSeq {
		t.Fatalf("state changed: %+v -> %+v", before, after)
	}
	for i := range after {
		if after[i] != before[i] {
			t.Fatalf("authority changed: %+v -> %+v", before[i], after[i])
		}
	}
}

// TestAuthorityIDs checks the ID formats: the X.509 authority ID is the hex
// subject key ID of the CA, and a leaf it signs names it as its issuer.
func TestAuthorityIDs(t *testing.T) {
	m, clk := newAuthManager(t, "")
	cert, key := m.X509Authority()
	info := byStatus(m.X509Authorities(), ca.StatusActive)[0]
	if len(cert.SubjectKeyId) == 0 || info.ID != ca.X509AuthorityID(cert) {
		t.Fatalf("authority ID %q, subject key ID %x", info.ID, cert.SubjectKeyId)
	}
	for _, r := range info.ID {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			t.Fatalf("authority ID %q is not lower-case hex", info.ID)
		}
	}
	if ids := m.X509AuthorityIDs(); len(ids) != 1 || ids[0] != info.ID {
		t.Fatalf("X509AuthorityIDs = %v", ids)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: clk.t, NotAfter: clk.t.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, cert, leafKey.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if got := ca.IssuerAuthorityID(leaf); got != info.ID {
		t.Fatalf("issuer authority ID %q, want %q", got, info.ID)
	}
	kid, _ := m.JWTKey()
	if j := byStatus(m.JWTAuthorities(), ca.StatusActive)[0]; j.ID != kid {
		t.Fatalf("JWT authority ID %q, want kid %q", j.ID, kid)
	}
	if m.IsUpstreamAuthority() {
		t.Fatal("self-signed CA reports an upstream authority")
	}
}
