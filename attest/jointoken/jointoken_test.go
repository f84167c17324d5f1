package jointoken_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/jointoken"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

var (
	errNotFound = errors.New("fake: not found")
	errExpired  = errors.New("fake: expired")
)

// tokens is an in-memory jointoken.Store with the real store's
// semantics: a token is deleted when spent, expired or not.
type tokens struct {
	mu   sync.Mutex
	exp  map[string]time.Time
	fail error
}

func (s *tokens) ConsumeJoinToken(_ context.Context, token string, now time.Time) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return time.Time{}, s.fail
	}
	exp, ok := s.exp[token]
	if !ok {
		return time.Time{}, errNotFound
	}
	delete(s.exp, token)
	if !now.Before(exp) {
		return exp, errExpired
	}
	return exp, nil
}

var _ jointoken.Store = (*tokens)(nil)

func TestAttest(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const (
		valid   = "0123456789abcdef-valid"
		expired = "0123456789abcdef-expired"
		reused  = "0123456789abcdef-reused"
		banned  = "0123456789abcdef-banned"
	)
	st := &tokens{exp: map[string]time.Time{
		valid:   now.Add(time.Minute),
		expired: now.Add(-time.Second),
		reused:  now.Add(time.Minute),
		banned:  now.Add(time.Minute),
	}}
	a, err := jointoken.NewAttestor(jointoken.Config{TrustDomain: td, Tokens: st, NotFound: errNotFound, Expired: errExpired, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if a.Type() != "join_token" {
		t.Fatalf("Type = %q", a.Type())
	}
	bannedID, _ := jointoken.AgentID(td, banned)
	admit := func(_ context.Context, id spiffeid.ID) error {
		if id == bannedID {
			return status.Error(codes.PermissionDenied, "failed to attest: agent is banned")
		}
		return nil
	}
	noChallenge := func(context.Context, []byte) ([]byte, error) {
		t.Error("join token attestation sent a challenge")
		return nil, errors.New("unexpected")
	}
	if _, err := a.Attest(context.Background(), attest.NodeRequest{Payload: []byte(reused), Challenge: noChallenge}); err != nil {
		t.Fatalf("first use of the reused token: %v", err)
	}
	tests := []struct {
		name  string
		token string
		want  string // agent ID; empty: refused with code and msg
		code  codes.Code
		msg   string
	}{
		{"valid", valid, "spiffe://example.org/spire/agent/join_token/" + valid, codes.OK, ""},
		{"valid, second use", valid, "", codes.InvalidArgument, "does not exist or has already been used"},
		{"unknown", "0123456789abcdef-unknown", "", codes.InvalidArgument, "does not exist or has already been used"},
		{"expired", expired, "", codes.InvalidArgument, "join token expired"},
		{"expired, second try", expired, "", codes.InvalidArgument, "does not exist or has already been used"},
		{"reused", reused, "", codes.InvalidArgument, "does not exist or has already been used"},
		{"banned agent", banned, "", codes.PermissionDenied, "banned"},
		{"empty", "", "", codes.InvalidArgument, "join token is empty"},
		{"not a path segment", "a/../b", "", codes.InvalidArgument, "not usable in a SPIFFE ID"},
		{"too long", strings.Repeat("a", jointoken.MaxLength+1), "", codes.InvalidArgument, "longer than the limit of 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := a.Attest(context.Background(), attest.NodeRequest{Payload: []byte(tt.token), Challenge: noChallenge, Admit: admit})
			if tt.want != "" {
				if err != nil {
					t.Fatalf("Attest: %v", err)
				}
				if res.AgentID.String() != tt.want || res.CanReattest || len(res.Selectors) != 0 {
					t.Fatalf("Attest = %+v, want %s, not reattestable, no selectors", res, tt.want)
				}
				return
			}
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("Attest: %v, want %v saying %q", err, tt.code, tt.msg)
			}
			if !res.AgentID.IsZero() {
				t.Fatalf("a refused attestation returned %s", res.AgentID)
			}
		})
	}
	// The banned agent's token was not spent.
	if _, ok := st.exp[banned]; !ok {
		t.Error("a refused agent used up its token")
	}
}

func TestAttestStoreFailure(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code codes.Code
	}{
		{"etcd down", errors.New("fake: unavailable"), codes.Internal},
		{"canceled", context.Canceled, codes.Canceled},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := jointoken.NewAttestor(jointoken.Config{TrustDomain: td, Tokens: &tokens{fail: tt.err}, NotFound: errNotFound, Expired: errExpired})
			if err != nil {
				t.Fatal(err)
			}
			_, err = a.Attest(context.Background(), attest.NodeRequest{Payload: []byte("0123456789abcdef")})
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), "failed to fetch join token") {
				t.Fatalf("Attest: %v, want %v", err, tt.code)
			}
		})
	}
}

func TestNewAttestorNeedsConfig(t *testing.T) {
	st := &tokens{}
	tests := []struct {
		name string
		cfg  jointoken.Config
	}{
		{"no trust domain", jointoken.Config{Tokens: st, NotFound: errNotFound, Expired: errExpired}},
		{"no store", jointoken.Config{TrustDomain: td, NotFound: errNotFound, Expired: errExpired}},
		{"no not-found error", jointoken.Config{TrustDomain: td, Tokens: st, Expired: errExpired}},
		{"no expired error", jointoken.Config{TrustDomain: td, Tokens: st, NotFound: errNotFound}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := jointoken.NewAttestor(tt.cfg); err == nil {
				t.Fatal("NewAttestor accepted an incomplete config")
			}
		})
	}
}

func TestEvidence(t *testing.T) {
	e := jointoken.NewEvidence("tok-0123456789abcdef")
	if e.Type() != jointoken.Type {
		t.Fatalf("Type = %q", e.Type())
	}
	p, err := e.Payload(context.Background())
	if err != nil || string(p) != "tok-0123456789abcdef" {
		t.Fatalf("Payload = %q, %v", p, err)
	}
	if _, err := e.Respond(context.Background(), []byte("nonce")); !errors.Is(err, jointoken.ErrNoChallenge) {
		t.Fatalf("Respond: %v, want ErrNoChallenge", err)
	}
	if _, err := jointoken.NewEvidence("").Payload(context.Background()); err == nil {
		t.Fatal("empty token: Payload gave no error")
	}
}
