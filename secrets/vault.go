package secrets

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/rotation/renewal"
)

// ErrVaultUnavailable wraps failures to reach Vault (network errors, 5xx).
var ErrVaultUnavailable = errors.New("secrets: vault unavailable")

// ErrVaultDenied wraps Vault's 401/403 answers.
var ErrVaultDenied = errors.New("secrets: vault permission denied")

// ErrVaultNotFound wraps Vault's 404 answers.
var ErrVaultNotFound = errors.New("secrets: vault path not found")

// Auth logs in to Vault. Implementations: TokenAuth, AppRoleAuth, JWTAuth.
type Auth interface {
	// Name names the method in logs ("token", "approle", "jwt").
	Name() string
	// Login returns the token and its auth metadata (TTL, renewable).
	Login(ctx context.Context, c *vault.Client) (*vault.SecretAuth, error)
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// Address is Vault's URL, e.g. https://vault.example:8200.
	Address string
	// TLS configures HTTPS (optional: system roots).
	TLS *tls.Config
	// Namespace is the Vault Enterprise namespace (optional).
	Namespace string
	// Auth logs in. Required.
	Auth Auth
	// Timeout bounds each HTTP request (default 10s).
	Timeout time.Duration
	Clock   clock.Clock
	Logger  *slog.Logger
}

// Client is an authenticated Vault client. It logs in on first use, renews
// its token at about 2/3 of its TTL (or logs in again when the token is not
// renewable, before 85% of its TTL, or when Vault refuses it), and never
// logs the token.
type Client struct {
	api   *vault.Client
	auth  Auth
	clock clock.Clock
	log   *slog.Logger

	mu        sync.Mutex
	loggedIn  bool
	renewable bool
	ttl       time.Duration
	issuedAt  time.Time
}

// NewClient returns a Client; it does not contact Vault.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Address == "" {
		return nil, errors.New("secrets: vault address is required")
	}
	if cfg.Auth == nil {
		return nil, errors.New("secrets: vault auth method is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	vc := vault.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("secrets: vault config: %w", vc.Error)
	}
	vc.Address = cfg.Address
	vc.Timeout = cfg.Timeout
	vc.MaxRetries = 0
	tr := &http.Transport{Proxy: nil, TLSClientConfig: cfg.TLS, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	if cfg.TLS == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	vc.HttpClient = &http.Client{Transport: tr, Timeout: cfg.Timeout}
	api, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("secrets: vault client: %w", err)
	}
	api.ClearToken() // never pick up $VAULT_TOKEN implicitly
	if cfg.Namespace != "" {
		api.SetNamespace(cfg.Namespace)
	}
	return &Client{api: api, auth: cfg.Auth, clock: cfg.Clock, log: cfg.Logger}, nil
}

// API returns the underlying client, logged in. Callers must not log its
// token.
func (c *Client) API(ctx context.Context) (*vault.Client, error) {
	if err := c.ensureLogin(ctx); err != nil {
		return nil, err
	}
	return c.api, nil
}

// Login logs in now (again, if already logged in).
func (c *Client) Login(ctx context.Context) error {
	a, err := c.auth.Login(ctx, c.api)
	if err != nil {
		return fmt.Errorf("secrets: vault login (%s): %w", c.auth.Name(), err)
	}
	if a == nil || a.ClientToken == "" {
		return fmt.Errorf("secrets: vault login (%s): no token in response", c.auth.Name())
	}
	c.api.SetToken(a.ClientToken)
	c.mu.Lock()
	c.loggedIn = true
	c.renewable = a.Renewable
	c.ttl = time.Duration(a.LeaseDuration) * time.Second
	c.issuedAt = c.clock.Now()
	c.mu.Unlock()
	c.log.Info("secrets: logged in to vault", "method", c.auth.Name(), "ttl", c.ttl.String(), "renewable", a.Renewable,
		"accessor_hash", HashID(a.Accessor))
	return nil
}

func (c *Client) ensureLogin(ctx context.Context) error {
	c.mu.Lock()
	ok := c.loggedIn
	c.mu.Unlock()
	if ok {
		return nil
	}
	return c.Login(ctx)
}

// do runs op with the logged-in client; if Vault answers 401/403 it logs in
// again once and retries (the token may have expired or Vault restarted).
func (c *Client) do(ctx context.Context, op func(*vault.Client) error) error {
	if err := c.ensureLogin(ctx); err != nil {
		return err
	}
	err := op(c.api)
	if err == nil || !errors.Is(err, ErrVaultDenied) {
		return err
	}
	// Vault answers 403 both for a policy denial and for a token it no
	// longer knows (expired, or a restarted dev server): only the latter
	// is helped by logging in again.
	if _, lerr := c.api.Auth().Token().LookupSelfWithContext(ctx); lerr == nil {
		return err
	}
	if lerr := c.Login(ctx); lerr != nil {
		return err
	}
	return op(c.api)
}

// tokenDue returns when the client's token must be renewed or replaced,
// and whether it is renewed (else a new login).
func (c *Client) tokenDue() (time.Time, bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loggedIn || c.ttl <= 0 {
		return time.Time{}, false, false
	}
	at, renew := renewal.Default().LeaseRenewAt(c.issuedAt, c.ttl, c.renewable)
	return at, renew, true
}

// Run keeps the token valid until ctx is done: renewable tokens are
// renewed at 2/3 of their TTL; other tokens (and tokens whose renewal
// fails or is capped) are replaced by a new login before 85% of their TTL.
func (c *Client) Run(ctx context.Context) error {
	backoff := time.Second
	for ctx.Err() == nil {
		if err := c.ensureLogin(ctx); err != nil {
			c.log.Warn("secrets: vault login failed", "method", c.auth.Name(), "error", err)
			if !clock.Sleep(ctx, c.clock, backoff) {
				break
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		due, renew, ok := c.tokenDue()
		if !ok {
			// A token without TTL (root) never needs renewing; wait
			// for cancellation but wake up hourly to check again.
			if !clock.Sleep(ctx, c.clock, time.Hour) {
				break
			}
			continue
		}
		if !clock.Sleep(ctx, c.clock, due.Sub(c.clock.Now())) {
			break
		}
		var err error
		if renew {
			err = c.renewSelf(ctx)
		}
		if !renew || err != nil {
			if err != nil {
				c.log.Warn("secrets: vault token renewal failed; logging in again", "error", err)
			}
			err = c.Login(ctx)
		}
		if err != nil {
			c.log.Warn("secrets: vault token refresh failed", "error", err)
			c.mu.Lock()
			c.issuedAt = c.clock.Now() // retry later, not in a hot loop
			c.ttl = max(c.ttl/2, 2*time.Second)
			c.mu.Unlock()
			continue
		}
		backoff = time.Second
	}
	return nil
}

func (c *Client) renewSelf(ctx context.Context) error {
	c.mu.Lock()
	want := c.ttl
	c.mu.Unlock()
	s, err := c.api.Auth().Token().RenewSelfWithContext(ctx, int(want/time.Second))
	if err != nil {
		return vaultErr("renew token", "auth/token/renew-self", err)
	}
	if s == nil || s.Auth == nil {
		return errors.New("secrets: renew token: empty response")
	}
	granted := time.Duration(s.Auth.LeaseDuration) * time.Second
	c.mu.Lock()
	c.issuedAt = c.clock.Now()
	c.ttl = granted
	// A capped renewal (max TTL reached) is not renewed again: the next
	// refresh is a new login before 85% of what is left.
	c.renewable = s.Auth.Renewable && granted >= want
	c.mu.Unlock()
	c.log.Debug("secrets: vault token renewed", "ttl", granted.String())
	return nil
}

// vaultErr turns a Vault API error into one that says what failed without
// echoing request or response bodies (they may carry secret material).
func vaultErr(op, path string, err error) error {
	if err == nil {
		return nil
	}
	var re *vault.ResponseError
	if errors.As(err, &re) {
		msg := ""
		if !re.RawError && len(re.Errors) > 0 {
			msg = ": " + truncate(strings.Join(re.Errors, "; "), 200)
		}
		var kind error
		switch {
		case re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden:
			kind = ErrVaultDenied
		case re.StatusCode == http.StatusNotFound:
			kind = ErrVaultNotFound
		case re.StatusCode >= 500:
			kind = ErrVaultUnavailable
		default:
			kind = errors.New("secrets: vault error")
		}
		return fmt.Errorf("%w: %s %s: HTTP %d%s", kind, op, path, re.StatusCode, msg)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s %s: %w", ErrVaultUnavailable, op, path, err)
	}
	// Transport errors (connection refused, timeouts) name the URL, which
	// holds only the path.
	return fmt.Errorf("%w: %s %s: %s", ErrVaultUnavailable, op, path, truncate(err.Error(), 300))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// TokenAuth uses a fixed token (a dev server's root token, or one an
// operator issued). Its TTL and renewability are read with
// auth/token/lookup-self.
type TokenAuth struct{ Token string }

// Name implements Auth.
func (TokenAuth) Name() string { return "token" }

// Login implements Auth.
func (t TokenAuth) Login(ctx context.Context, c *vault.Client) (*vault.SecretAuth, error) {
	if t.Token == "" {
		return nil, errors.New("empty token")
	}
	c.SetToken(t.Token)
	s, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, vaultErr("lookup token", "auth/token/lookup-self", err)
	}
	a := &vault.SecretAuth{ClientToken: t.Token}
	if s != nil {
		ttl, _ := s.TokenTTL()
		a.LeaseDuration = int(ttl / time.Second)
		a.Renewable, _ = s.TokenIsRenewable()
		a.Accessor, _ = s.TokenAccessor()
	}
	return a, nil
}

// AppRoleAuth logs in with an AppRole role ID and secret ID.
type AppRoleAuth struct {
	Mount    string // default "approle"
	RoleID   string
	SecretID string
}

// Name implements Auth.
func (AppRoleAuth) Name() string { return "approle" }

// Login implements Auth.
func (a AppRoleAuth) Login(ctx context.Context, c *vault.Client) (*vault.SecretAuth, error) {
	mount := a.Mount
	if mount == "" {
		mount = "approle"
	}
	path := "auth/" + mount + "/login"
	return login(ctx, c, path, map[string]any{"role_id": a.RoleID, "secret_id": a.SecretID})
}

// JWTAuth logs in to Vault's jwt auth method with a JWT-SVID: Vault
// verifies it against Signet's JWKS (or OIDC discovery document) and maps
// it to a Vault role.
type JWTAuth struct {
	Mount string // default "jwt"
	Role  string
	// Token returns a fresh JWT-SVID whose audience the Vault role
	// accepts.
	Token func(ctx context.Context) (string, error)
}

// Name implements Auth.
func (JWTAuth) Name() string { return "jwt" }

// Login implements Auth.
func (j JWTAuth) Login(ctx context.Context, c *vault.Client) (*vault.SecretAuth, error) {
	if j.Token == nil {
		return nil, errors.New("no JWT-SVID source")
	}
	tok, err := j.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch JWT-SVID: %w", err)
	}
	mount := j.Mount
	if mount == "" {
		mount = "jwt"
	}
	return login(ctx, c, "auth/"+mount+"/login", map[string]any{"role": j.Role, "jwt": tok})
}

func login(ctx context.Context, c *vault.Client, path string, body map[string]any) (*vault.SecretAuth, error) {
	// Log in with a clone without a token, so a stale token is not sent.
	lc, err := c.CloneWithHeaders()
	if err != nil {
		return nil, err
	}
	lc.ClearToken()
	s, err := lc.Logical().WriteWithContext(ctx, path, body)
	if err != nil {
		return nil, vaultErr("login", path, err)
	}
	if s == nil || s.Auth == nil {
		return nil, fmt.Errorf("login %s: no auth in response", path)
	}
	return s.Auth, nil
}
