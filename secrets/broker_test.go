package secrets_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/secrets"
	"github.com/signet-id/signet/secrets/vaulttest"
)

// logBuffer captures every log record (debug included) as JSON.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls the captured logs until they contain s.
func (l *logBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	for range 600 {
		if strings.Contains(l.String(), s) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("logs never contained %q:\n%s", s, l.String())
}

// leakGuard records the secret values a test handles and, when the test
// ends, fails it if any of them appears in the captured logs, the events
// or the errors it saw.
type leakGuard struct {
	t      *testing.T
	logs   *logBuffer
	mu     sync.Mutex
	values []string
	seen   []string // errors and event details
}

func newLeakGuard(t *testing.T) (*leakGuard, *slog.Logger) {
	g := &leakGuard{t: t, logs: &logBuffer{}}
	t.Cleanup(g.check)
	return g, slog.New(slog.NewJSONHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (g *leakGuard) secret(v string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.values = append(g.values, v)
}

func (g *leakGuard) saw(s string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seen = append(g.seen, s)
}

func (g *leakGuard) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	all := g.logs.String() + "\n" + strings.Join(g.seen, "\n")
	for _, v := range g.values {
		if v != "" && strings.Contains(all, v) {
			g.t.Errorf("a secret value leaked into logs, events or errors: %q", v)
		}
	}
}

// recordingSink keeps appended events.
type recordingSink struct {
	g  *leakGuard
	mu sync.Mutex
	ev []eventlog.Event
}

func (r *recordingSink) Append(_ context.Context, e eventlog.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ev = append(r.ev, e)
	if r.g != nil {
		r.g.saw(string(e.Kind) + " " + e.Subject + " " + e.Actor + " " + strings.Join(mapValues(e.Details), " "))
	}
	return nil
}

func (r *recordingSink) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.ev {
		out = append(out, string(e.Kind))
	}
	return out
}

func mapValues(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

type fixture struct {
	vault  *vaulttest.Server
	broker *secrets.Broker
	client *secrets.Client
	events *recordingSink
	guard  *leakGuard
	log    *slog.Logger
}

func newFixture(t *testing.T, auth secrets.Auth, vs *vaulttest.Server, opts ...func(*secrets.BrokerConfig)) *fixture {
	t.Helper()
	if vs == nil {
		vs = vaulttest.Start(t)
	}
	guard, log := newLeakGuard(t)
	if auth == nil {
		auth = secrets.TokenAuth{Token: vaulttest.RootToken}
	}
	c, err := secrets.NewClient(secrets.ClientConfig{Address: vs.Addr, Auth: auth, Timeout: 2 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	sink := &recordingSink{g: guard}
	cfg := secrets.BrokerConfig{
		Client: c, PollInterval: 100 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		Events: sink, Actor: "spiffe://example.org/spire/server", Logger: log,
	}
	for _, o := range opts {
		o(&cfg)
	}
	b, err := secrets.NewBroker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return &fixture{vault: vs, broker: b, client: c, events: sink, guard: guard, log: log}
}

// next returns the next value of sub, failing on an error update.
func next(t *testing.T, g *leakGuard, sub *secrets.Subscription) *secrets.Value {
	t.Helper()
	select {
	case u := <-sub.Updates():
		if u.Err != nil {
			g.saw(u.Err.Error())
			t.Fatalf("update error: %v", u.Err)
		}
		return u.Value
	case <-sub.Done():
		t.Fatalf("subscription ended: %v", sub.Err())
	case <-time.After(time.Minute):
		t.Fatal("no update within a minute")
	}
	return nil
}

var webID = spiffeid.RequireFromString("spiffe://example.org/ns/prod/web")

func TestKV2NewVersionPushed(t *testing.T) {
	f := newFixture(t, nil, nil)
	f.guard.secret("first-s3cret-value")
	f.guard.secret("second-s3cret-value")
	f.vault.PutKV(t, "secret", "app/db", map[string]any{"password": "first-s3cret-value", "user": "app"})

	p := secrets.Policy{ID: "db", SPIFFEIDPattern: "spiffe://example.org/ns/prod/*", Path: "secret/app/db", Engine: secrets.EngineKV2}
	sub, err := f.broker.Watch(p, webID)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	v := next(t, f.guard, sub)
	if v.Version != 1 || string(v.Data) != `{"password":"first-s3cret-value","user":"app"}` || v.ContentType != secrets.ContentJSON {
		t.Fatalf("first value: version %d, %s", v.Version, v.ContentType)
	}

	// A second subscriber to the same secret gets the current value at once.
	sub2, err := f.broker.Watch(secrets.Policy{ID: "db-password", SPIFFEIDPattern: webID.String(), Path: "secret/app/db", Engine: secrets.EngineKV2, Field: "password"}, webID)
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	if v := next(t, f.guard, sub2); string(v.Data) != "first-s3cret-value" || v.ContentType != secrets.ContentText {
		t.Fatalf("field value: %s", v.ContentType)
	}

	f.vault.PutKV(t, "secret", "app/db", map[string]any{"password": "second-s3cret-value", "user": "app"})
	v = next(t, f.guard, sub)
	if v.Version != 2 || !strings.Contains(string(v.Data), "second-s3cret-value") {
		t.Fatalf("second value: version %d", v.Version)
	}
	if v := next(t, f.guard, sub2); string(v.Data) != "second-s3cret-value" || v.Version != 2 {
		t.Fatalf("second field value: version %d", v.Version)
	}
	found := false
	for _, k := range f.events.kinds() {
		found = found || k == string(eventlog.KindSecretVersionChanged)
	}
	if !found {
		t.Fatalf("no %s event; events: %v", eventlog.KindSecretVersionChanged, f.events.kinds())
	}
}

func TestPolicyDenied(t *testing.T) {
	f := newFixture(t, nil, nil)
	f.guard.secret("never-released-value")
	f.vault.PutKV(t, "secret", "admin", map[string]any{"key": "never-released-value"})
	p := secrets.Policy{ID: "admin", SPIFFEIDPattern: "spiffe://example.org/admin/*", Path: "secret/admin", Engine: secrets.EngineKV2}
	sub, err := f.broker.Watch(p, webID)
	if !errors.Is(err, secrets.ErrDenied) || sub != nil {
		t.Fatalf("Watch = %v, %v; want ErrDenied", sub, err)
	}
	f.guard.saw(err.Error())
}

// tokenPolicy is a leased secret: a Vault token created with a short TTL
// and a max TTL, delivered as its client_token.
func tokenPolicy(ttl, maxTTL string) secrets.Policy {
	return secrets.Policy{
		ID: "batch-token", SPIFFEIDPattern: webID.String(), Path: "auth/token/create", Engine: secrets.EngineLeased,
		Field:  "client_token",
		Params: map[string]string{"ttl": ttl, "explicit_max_ttl": maxTTL, "policies": "default"},
	}
}

func TestLeasedSecretRenewedThenReplaced(t *testing.T) {
	f := newFixture(t, nil, nil)
	// A 3s lease renewed at 2s; its 5s max TTL caps the renewal (3s
	// granted at t=2 would pass the max, so Vault grants 3s... then ~1s),
	// after which it is replaced before 85% of what is left.
	sub, err := f.broker.Watch(tokenPolicy("3s", "5s"), webID)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	first := next(t, f.guard, sub)
	f.guard.secret(string(first.Data))
	if first.Version != 1 || first.LeaseIDHash == "" || !first.Renewable || first.LeaseTTL != 3*time.Second {
		t.Fatalf("first lease: %v renewable=%v", first, first.Renewable)
	}
	// The token works.
	vc := f.vault.Client(t)
	if _, err := vc.Auth().Token().Lookup(string(first.Data)); err != nil {
		t.Fatalf("delivered token does not work: %v", err)
	}
	renewed := false
	var replaced *secrets.Value
	for range 20 {
		v := next(t, f.guard, sub)
		f.guard.secret(string(v.Data))
		if v.Version == 1 {
			if string(v.Data) != string(first.Data) || !v.ExpiresAt.After(first.ExpiresAt) {
				t.Fatalf("renewal changed the value or did not extend the lease: %v", v)
			}
			renewed = true
			continue
		}
		replaced = v
		break
	}
	if !renewed || replaced == nil {
		t.Fatalf("renewed=%v replaced=%v", renewed, replaced != nil)
	}
	if replaced.Version != 2 || string(replaced.Data) == string(first.Data) || replaced.LeaseIDHash == first.LeaseIDHash {
		t.Fatalf("replacement is not a new lease: %v", replaced)
	}
	if _, err := vc.Auth().Token().Lookup(string(replaced.Data)); err != nil {
		t.Fatalf("replacement token does not work: %v", err)
	}
	kinds := strings.Join(f.events.kinds(), ",")
	for _, k := range []string{string(secrets.KindLeaseIssued), string(secrets.KindLeaseRenewed)} {
		if !strings.Contains(kinds, k) {
			t.Fatalf("no %s event in %s", k, kinds)
		}
	}
	if strings.Count(kinds, string(secrets.KindLeaseIssued)) < 2 {
		t.Fatalf("replacement not recorded: %s", kinds)
	}
}

func TestRevokeStopsDeliveryAndRevokesLease(t *testing.T) {
	f := newFixture(t, nil, nil)
	sub, err := f.broker.Watch(tokenPolicy("1h", "2h"), webID)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	v := next(t, f.guard, sub)
	tok := string(v.Data)
	f.guard.secret(tok)
	vc := f.vault.Client(t)
	if _, err := vc.Auth().Token().Lookup(tok); err != nil {
		t.Fatalf("delivered token does not work: %v", err)
	}

	f.broker.Revoke(testCtx(t), "batch-token")
	select {
	case <-sub.Done():
	case <-time.After(time.Minute):
		t.Fatal("subscription not ended by Revoke")
	}
	if !errors.Is(sub.Err(), secrets.ErrRevoked) {
		t.Fatalf("Err = %v, want ErrRevoked", sub.Err())
	}
	if _, err := vc.Auth().Token().Lookup(tok); err == nil {
		t.Fatal("the lease's token still works after Revoke")
	}
	if !strings.Contains(strings.Join(f.events.kinds(), ","), string(secrets.KindLeaseRevoked)) {
		t.Fatalf("no %s event: %v", secrets.KindLeaseRevoked, f.events.kinds())
	}
}

func TestVaultOutageKeepsLastValueAndResumes(t *testing.T) {
	f := newFixture(t, nil, nil)
	f.guard.secret("before-outage-value")
	f.guard.secret("after-outage-value")
	f.vault.PutKV(t, "secret", "app/api", map[string]any{"key": "before-outage-value"})
	p := secrets.Policy{ID: "api", SPIFFEIDPattern: webID.String(), Path: "secret/app/api", Engine: secrets.EngineKV2, Field: "key"}
	sub, err := f.broker.Watch(p, webID)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if v := next(t, f.guard, sub); string(v.Data) != "before-outage-value" {
		t.Fatal("wrong first value")
	}

	f.vault.Stop()
	f.guard.logs.waitFor(t, "vault read failed")
	// Several polls fail meanwhile; the subscriber sees nothing.
	f.guard.logs.waitFor(t, "vault read failed again")
	select {
	case u := <-sub.Updates():
		t.Fatalf("update during the outage: value=%v err=%v", u.Value, u.Err)
	case <-sub.Done():
		t.Fatalf("subscription ended during the outage: %v", sub.Err())
	default:
	}

	// Vault returns (a dev server: empty again, same root token) and the
	// secret is written anew.
	f.vault.Restart(t)
	f.vault.PutKV(t, "secret", "app/api", map[string]any{"key": "after-outage-value"})
	if v := next(t, f.guard, sub); string(v.Data) != "after-outage-value" {
		t.Fatal("no update after Vault returned")
	}
	f.guard.logs.waitFor(t, "vault reachable again")
}

func TestAppRoleAuth(t *testing.T) {
	vs := vaulttest.Start(t)
	vc := vs.Client(t)
	if err := vc.Sys().EnableAuthWithOptions("approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	if err := vc.Sys().PutPolicy("signet", `path "secret/data/*" { capabilities = ["read"] }
path "secret/metadata/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	vs.Write(t, "auth/approle/role/signet", map[string]any{"token_policies": "signet", "token_ttl": "1h"})
	rid, err := vc.Logical().Read("auth/approle/role/signet/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid := vs.Write(t, "auth/approle/role/signet/secret-id", nil)
	auth := secrets.AppRoleAuth{RoleID: rid.Data["role_id"].(string), SecretID: sid.Data["secret_id"].(string)}
	f := newFixture(t, auth, vs)
	f.guard.secret(auth.SecretID)
	f.guard.secret("approle-read-value")
	vs.PutKV(t, "secret", "svc", map[string]any{"v": "approle-read-value"})

	sub, err := f.broker.Watch(secrets.Policy{ID: "svc", SPIFFEIDPattern: webID.String(), Path: "secret/svc", Engine: secrets.EngineKV2, Field: "v"}, webID)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if v := next(t, f.guard, sub); string(v.Data) != "approle-read-value" {
		t.Fatal("wrong value")
	}
	// The AppRole token may not read other mounts' paths: the broker
	// reports an error (without the value) instead of a value.
	sub2, err := f.broker.Watch(secrets.Policy{ID: "tok", SPIFFEIDPattern: webID.String(), Path: "auth/token/create", Engine: secrets.EngineLeased,
		Params: map[string]string{"ttl": "1m"}}, webID)
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	select {
	case u := <-sub2.Updates():
		if u.Err == nil || !errors.Is(u.Err, secrets.ErrVaultDenied) {
			t.Fatalf("update = %v, %v; want ErrVaultDenied", u.Value, u.Err)
		}
		f.guard.saw(u.Err.Error())
	case <-time.After(time.Minute):
		t.Fatal("no update")
	}
}

func TestNonRenewableLeaseReplacedBeforeExpiry(t *testing.T) {
	f := newFixture(t, nil, nil)
	vc := f.vault.Client(t)
	if err := vc.Sys().Mount("pki", &vault.MountInput{Type: "pki", Config: vault.MountConfigInput{MaxLeaseTTL: "87600h"}}); err != nil {
		t.Fatal(err)
	}
	f.vault.Write(t, "pki/root/generate/internal", map[string]any{"common_name": "Test Root", "ttl": "8760h"})
	// P-256 keys: Vault generates an RSA key per issue by default, which
	// can outlast the fixture's 2 s request timeout on a loaded machine.
	f.vault.Write(t, "pki/roles/web", map[string]any{"allowed_domains": "example.org", "allow_subdomains": true, "generate_lease": true, "max_ttl": "1h",
		"key_type": "ec", "key_bits": 256})
	p := secrets.Policy{ID: "web-cert", SPIFFEIDPattern: webID.String(), Path: "pki/issue/web", Engine: secrets.EngineLeased,
		Params: map[string]string{"common_name": "web.example.org", "ttl": "4s"}}
	sub, err := f.broker.Watch(p, webID)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	first := next(t, f.guard, sub)
	var fields map[string]any
	if err := json.Unmarshal(first.Data, &fields); err != nil {
		t.Fatal(err)
	}
	f.guard.secret(fields["private_key"].(string))
	if first.Renewable || first.LeaseIDHash == "" || first.LeaseTTL <= 0 || first.LeaseTTL > 4*time.Second {
		t.Fatalf("first lease: %v renewable=%v", first, first.Renewable)
	}
	second := next(t, f.guard, sub)
	if second.Version != 2 || second.LeaseIDHash == first.LeaseIDHash || !second.UpdatedAt.Before(first.ExpiresAt) {
		t.Fatalf("replacement: %v (first expires %v)", second, first.ExpiresAt)
	}
	if err := json.Unmarshal(second.Data, &fields); err != nil {
		t.Fatal(err)
	}
	f.guard.secret(fields["private_key"].(string))
	if strings.Contains(strings.Join(f.events.kinds(), ","), string(secrets.KindLeaseRenewed)) {
		t.Fatal("a non-renewable lease was renewed")
	}
}

// TestLogsNeverCarrySecrets runs every path that logs (reads, new
// versions, leases obtained, renewed and revoked, read failures, refusals)
// with debug logging captured, and fails if a secret value appears in a log
// line, an event or an error (the leak guard checks when the test ends).
func TestLogsNeverCarrySecrets(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFixture(t, nil, nil, func(c *secrets.BrokerConfig) { c.Registerer = reg })
	f.guard.secret("kv-secret-alpha")
	f.guard.secret("kv-secret-beta")
	f.vault.PutKV(t, "secret", "scan", map[string]any{"a": "kv-secret-alpha"})
	kv, err := f.broker.Watch(secrets.Policy{ID: "scan", SPIFFEIDPattern: webID.String(), Path: "secret/scan", Engine: secrets.EngineKV2}, webID)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	next(t, f.guard, kv)
	f.vault.PutKV(t, "secret", "scan", map[string]any{"a": "kv-secret-beta"})
	next(t, f.guard, kv)

	tok, err := f.broker.Watch(tokenPolicy("2s", "1h"), webID)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	v := next(t, f.guard, tok)
	f.guard.secret(string(v.Data))
	r := next(t, f.guard, tok) // renewed
	f.guard.secret(string(r.Data))

	// A missing field fails without echoing the secret.
	bad, err := f.broker.Watch(secrets.Policy{ID: "scan-bad", SPIFFEIDPattern: webID.String(), Path: "secret/scan", Engine: secrets.EngineKV2, Field: "nope"}, webID)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if u := <-bad.Updates(); u.Err == nil {
		t.Fatal("missing field delivered a value")
	} else {
		f.guard.saw(u.Err.Error())
	}
	f.broker.Revoke(testCtx(t), "batch-token")

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ops := 0.0
	for _, mf := range mfs {
		f.guard.saw(mf.String())
		if mf.GetName() == "signet_secrets_vault_operations_total" {
			for _, m := range mf.GetMetric() {
				ops += m.GetCounter().GetValue()
			}
		}
	}
	if ops < 4 {
		t.Errorf("vault operations counted: %v", ops)
	}

	logs := f.guard.logs.String()
	for _, want := range []string{"lease obtained", "lease renewed", "lease revoked", "new secret version delivered", "lease_id_hash"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q: the scan would prove nothing", want)
		}
	}
}

// TestLeaseRenewalOnInjectedClock drives the renewal schedule with a fake
// clock: nothing happens before 2/3 of the TTL, the renewal happens once
// the clock passes it.
func TestLeaseRenewalOnInjectedClock(t *testing.T) {
	start := time.Unix(1_900_000_000, 0)
	clk := fakeclock.New(start)
	f := newFixture(t, nil, nil, func(c *secrets.BrokerConfig) { c.Clock = clk })
	sub, err := f.broker.Watch(tokenPolicy("1h", "24h"), webID)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	first := next(t, f.guard, sub)
	f.guard.secret(string(first.Data))
	if !first.ExpiresAt.Equal(start.Add(time.Hour)) {
		t.Fatalf("expires at %v, want %v", first.ExpiresAt, start.Add(time.Hour))
	}
	if err := clk.WaitForTimers(testCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	if at, _ := clk.Next(); !at.Equal(start.Add(40 * time.Minute)) {
		t.Fatalf("renewal due at %v, want 2/3 of the TTL (%v)", at, start.Add(40*time.Minute))
	}
	clk.Advance(39 * time.Minute)
	select {
	case u := <-sub.Updates():
		t.Fatalf("update before 2/3 of the TTL: %v %v", u.Value, u.Err)
	default:
	}
	clk.Advance(2 * time.Minute)
	renewed := next(t, f.guard, sub)
	if renewed.Version != 1 || !renewed.ExpiresAt.Equal(start.Add(41*time.Minute+time.Hour)) {
		t.Fatalf("renewed: %v expires %v", renewed, renewed.ExpiresAt)
	}
	if !strings.Contains(strings.Join(f.events.kinds(), ","), string(secrets.KindLeaseRenewed)) {
		t.Fatalf("no renewal event: %v", f.events.kinds())
	}
}

// TestClientKeepsItsTokenFresh logs in with AppRole to short-lived tokens:
// the client renews its token at 2/3 of its TTL and, once renewals are
// capped by the max TTL, logs in again before the token expires.
func TestClientKeepsItsTokenFresh(t *testing.T) {
	vs := vaulttest.Start(t)
	vc := vs.Client(t)
	if err := vc.Sys().EnableAuthWithOptions("approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	vs.Write(t, "auth/approle/role/short", map[string]any{"token_ttl": "3s", "token_max_ttl": "5s", "token_policies": "default"})
	rid, err := vc.Logical().Read("auth/approle/role/short/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid := vs.Write(t, "auth/approle/role/short/secret-id", nil)
	guard, log := newLeakGuard(t)
	guard.secret(sid.Data["secret_id"].(string))
	c, err := secrets.NewClient(secrets.ClientConfig{Address: vs.Addr, Logger: log,
		Auth: secrets.AppRoleAuth{RoleID: rid.Data["role_id"].(string), SecretID: sid.Data["secret_id"].(string)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	guard.logs.waitFor(t, "vault token renewed")
	for range 600 {
		if strings.Count(guard.logs.String(), "logged in to vault") >= 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := strings.Count(guard.logs.String(), "logged in to vault"); n < 2 {
		t.Fatalf("logged in %d times; want a new login after the capped renewal", n)
	}
	api, err := c.API(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		t.Fatalf("token not valid after refreshes: %v", err)
	}
}
