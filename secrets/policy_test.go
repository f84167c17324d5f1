package secrets

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestPolicyMatches(t *testing.T) {
	tests := []struct {
		pattern string
		id      string
		want    bool
	}{
		{"spiffe://td/ns/web", "spiffe://td/ns/web", true},
		{"spiffe://td/ns/web", "spiffe://td/ns/web2", false},
		{"spiffe://td/ns/web", "spiffe://other/ns/web", false},
		{"spiffe://td/ns/*", "spiffe://td/ns/web", true},
		{"spiffe://td/ns/*", "spiffe://td/ns/web/x", false},
		{"spiffe://td/ns/*", "spiffe://td/ns", false},
		{"spiffe://td/ns/**", "spiffe://td/ns/web/x", true},
		{"spiffe://td/ns/**", "spiffe://td/ns/web", true},
		{"spiffe://td/ns/**", "spiffe://td/ns", false},
		{"spiffe://td/**", "spiffe://td/a", true},
		{"spiffe://td/ns/web-*", "spiffe://td/ns/web-1", true},
		{"spiffe://td/ns/web-*", "spiffe://td/ns/api-1", false},
		{"spiffe://td/*/db", "spiffe://td/prod/db", true},
		{"spiffe://td/*/db", "spiffe://td/prod/web", false},
		{"spiffe://td/a*b*c", "spiffe://td/aXbYc", true},
		{"spiffe://td/a*b*c", "spiffe://td/aXbY", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s~%s", tt.pattern, tt.id), func(t *testing.T) {
			p := Policy{ID: "x", SPIFFEIDPattern: tt.pattern, Path: "secret/x", Engine: EngineKV2}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := p.Matches(spiffeid.RequireFromString(tt.id)); got != tt.want {
				t.Fatalf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	ok := Policy{ID: "db", SPIFFEIDPattern: "spiffe://td/web", Path: "secret/db", Engine: EngineKV2}
	tests := []struct {
		name string
		mod  func(*Policy)
	}{
		{"empty id", func(p *Policy) { p.ID = "" }},
		{"id with slash", func(p *Policy) { p.ID = "a/b" }},
		{"long id", func(p *Policy) { p.ID = strings.Repeat("a", 129) }},
		{"no scheme", func(p *Policy) { p.SPIFFEIDPattern = "td/web" }},
		{"no path", func(p *Policy) { p.SPIFFEIDPattern = "spiffe://td" }},
		{"bad td", func(p *Policy) { p.SPIFFEIDPattern = "spiffe://T D/x" }},
		{"inner **", func(p *Policy) { p.SPIFFEIDPattern = "spiffe://td/**/x" }},
		{"dot segment", func(p *Policy) { p.SPIFFEIDPattern = "spiffe://td/../x" }},
		{"kv2 without mount", func(p *Policy) { p.Path = "db" }},
		{"absolute path", func(p *Policy) { p.Path = "/secret/db" }},
		{"dotdot path", func(p *Policy) { p.Path = "secret/../sys" }},
		{"engine", func(p *Policy) { p.Engine = "kv1" }},
		{"kv2 params", func(p *Policy) { p.Params = map[string]string{"a": "b"} }},
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok
			tt.mod(&p)
			if err := p.Validate(); !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("Validate = %v, want ErrInvalidPolicy", err)
			}
		})
	}
}

func TestLeaseAction(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name      string
		l         lease
		wantAt    time.Time
		wantRenew bool
	}{
		{"renewable at 2/3", lease{ttl: 30 * time.Second, renew: true, obtained: t0}, t0.Add(20 * time.Second), true},
		{"non-renewable at 85%", lease{ttl: 100 * time.Second, obtained: t0}, t0.Add(85 * time.Second), false},
		{"capped renewal replaced at 85%", lease{ttl: 20 * time.Second, origTTL: 60 * time.Second, obtained: t0}, t0.Add(17 * time.Second), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at, renew := leaseAction(&tt.l)
			if !at.Equal(tt.wantAt) || renew != tt.wantRenew {
				t.Fatalf("leaseAction = %v, %v; want %v, %v", at, renew, tt.wantAt, tt.wantRenew)
			}
		})
	}
}

func TestEncodeData(t *testing.T) {
	data := map[string]any{"user": "app", "password": "hunter2", "port": 5432}
	tests := []struct {
		field, want, ct string
		err             bool
	}{
		{"", `{"password":"hunter2","port":5432,"user":"app"}`, ContentJSON, false},
		{"password", "hunter2", ContentText, false},
		{"port", "5432", ContentJSON, false},
		{"missing", "", "", true},
	}
	for _, tt := range tests {
		got, ct, err := encodeData(data, tt.field)
		if tt.err {
			if err == nil || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("field %q: err = %v", tt.field, err)
			}
			continue
		}
		if err != nil || string(got) != tt.want || ct != tt.ct {
			t.Fatalf("field %q: %q %q %v", tt.field, got, ct, err)
		}
	}
}

func TestValueNeverPrintsData(t *testing.T) {
	v := Value{Name: "db", SPIFFEID: spiffeid.RequireFromString("spiffe://td/web"), Data: []byte("hunter2"), Version: 3}
	for _, s := range []string{fmt.Sprint(v), fmt.Sprintf("%+v", v), fmt.Sprintf("%#v", &v), fmt.Sprintf("%v", []Value{v}), v.String()} {
		// The second form is the bytes in decimal ([104 117 …]), on purpose.
		if strings.Contains(s, "hunter2") || strings.Contains(s, fmt.Sprint([]byte("hunter2"))) { //nolint:staticcheck // QF1010
			t.Fatalf("value printed its data: %s", s)
		}
	}
}
