package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func parseFlags(t *testing.T, register func(*pflag.FlagSet), args []string) (*pflag.FlagSet, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	register(fs)
	fs.SetNormalizeFunc(spireNormalize)
	return fs, fs.Parse(args)
}

func assertProto(t *testing.T, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("request differs\n got: %s\nwant: %s", protojson.Format(got), protojson.Format(want))
	}
}

// assertUsage checks err is a usage error mentioning every part of want.
func assertUsage(t *testing.T, err error, want ...string) {
	t.Helper()
	var ue usageError
	if !errors.As(err, &ue) {
		t.Fatalf("want a usage error, got %v", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func sid(td, path string) *types.SPIFFEID { return &types.SPIFFEID{TrustDomain: td, Path: path} }

func TestEntryCreateRequest(t *testing.T) {
	agent := "spiffe://example.org/spire/agent/join_token/abc"
	tests := []struct {
		name string
		args []string
		want *types.Entry
		err  []string
	}{
		{
			name: "minimal",
			args: []string{"--parent-id", agent, "--spiffe-id", "spiffe://example.org/web", "--selector", "unix:uid:1000"},
			want: &types.Entry{
				ParentId:  sid("example.org", "/spire/agent/join_token/abc"),
				SpiffeId:  sid("example.org", "/web"),
				Selectors: []*types.Selector{{Type: "unix", Value: "uid:1000"}},
			},
		},
		{
			name: "every field",
			args: []string{
				"--entry-id", "my-id", "--parent-id", agent, "--spiffe-id", "spiffe://example.org/web",
				"--selector", "unix:uid:1000", "--selector", "unix:gid:50",
				"--x509-svid-ttl", "1h", "--jwt-svid-ttl", "300",
				"--dns", "web.example.org", "--dns", "web",
				"--federates-with", "spiffe://other.org", "--federates-with", "third.org",
				"--admin", "--downstream", "--hint", "external", "--entry-expiry", "1900000000",
			},
			want: &types.Entry{
				Id:            "my-id",
				ParentId:      sid("example.org", "/spire/agent/join_token/abc"),
				SpiffeId:      sid("example.org", "/web"),
				Selectors:     []*types.Selector{{Type: "unix", Value: "uid:1000"}, {Type: "unix", Value: "gid:50"}},
				X509SvidTtl:   3600,
				JwtSvidTtl:    300,
				DnsNames:      []string{"web.example.org", "web"},
				FederatesWith: []string{"other.org", "third.org"},
				Admin:         true,
				Downstream:    true,
				Hint:          "external",
				ExpiresAt:     1900000000,
			},
		},
		{
			name: "node entry",
			args: []string{"--node", "--spiffe-id", "spiffe://example.org/nodes/prod", "--selector", "k8s_psat:cluster:prod"},
			want: &types.Entry{
				ParentId:  sid("example.org", "/spire/server"),
				SpiffeId:  sid("example.org", "/nodes/prod"),
				Selectors: []*types.Selector{{Type: "k8s_psat", Value: "cluster:prod"}},
			},
		},
		{
			name: "spire-server camelCase spellings",
			args: []string{"--parentID", agent, "--spiffeID", "spiffe://example.org/web", "--selector", "unix:uid:0", "--x509SVIDTTL", "60", "--federatesWith", "other.org"},
			want: &types.Entry{
				ParentId:      sid("example.org", "/spire/agent/join_token/abc"),
				SpiffeId:      sid("example.org", "/web"),
				Selectors:     []*types.Selector{{Type: "unix", Value: "uid:0"}},
				X509SvidTtl:   60,
				FederatesWith: []string{"other.org"},
			},
		},
		{name: "no spiffe id", args: []string{"--parent-id", agent, "--selector", "unix:uid:0"}, err: []string{"--spiffe-id is required"}},
		{name: "no parent", args: []string{"--spiffe-id", "spiffe://example.org/web", "--selector", "unix:uid:0"}, err: []string{"--parent-id is required", "--node"}},
		{name: "no selector", args: []string{"--parent-id", agent, "--spiffe-id", "spiffe://example.org/web"}, err: []string{"--selector", "unix:uid:1000"}},
		{name: "malformed spiffe id", args: []string{"--parent-id", agent, "--spiffe-id", "example.org/web", "--selector", "unix:uid:0"}, err: []string{`invalid --spiffe-id "example.org/web"`, "spiffe://"}},
		{name: "malformed parent id", args: []string{"--parent-id", "spiffe://Bad Domain/x", "--spiffe-id", "spiffe://example.org/web", "--selector", "unix:uid:0"}, err: []string{"invalid --parent-id"}},
		{name: "malformed selector", args: []string{"--parent-id", agent, "--spiffe-id", "spiffe://example.org/web", "--selector", "unix"}, err: []string{`invalid --selector "unix"`, "type:value"}},
		{name: "empty selector value", args: []string{"--parent-id", agent, "--spiffe-id", "spiffe://example.org/web", "--selector", "unix:"}, err: []string{"type:value"}},
		{name: "node and parent", args: []string{"--node", "--parent-id", agent, "--spiffe-id", "spiffe://example.org/web", "--selector", "unix:uid:0"}, err: []string{"--node and --parent-id are exclusive"}},
		{name: "node federates", args: []string{"--node", "--spiffe-id", "spiffe://example.org/web", "--selector", "a:b", "--federates-with", "other.org"}, err: []string{"node entries cannot federate"}},
		{name: "bad federated trust domain", args: []string{"--parent-id", agent, "--spiffe-id", "spiffe://example.org/web", "--selector", "a:b", "--federates-with", "Other.org"}, err: []string{"invalid --federates-with"}},
		{name: "negative expiry", args: []string{"--parent-id", agent, "--spiffe-id", "spiffe://example.org/web", "--selector", "a:b", "--entry-expiry", "-1"}, err: []string{"--entry-expiry"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &entryFlags{}
			if _, err := parseFlags(t, func(fs *pflag.FlagSet) { f.register(fs, "") }, tt.args); err != nil {
				t.Fatalf("parsing flags: %v", err)
			}
			req, err := f.createRequest()
			if tt.err != nil {
				assertUsage(t, err, tt.err...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertProto(t, req, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{tt.want}})
		})
	}
}

func TestEntryFlagParseErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--x509-svid-ttl", "-5"}, "must not be negative"},
		{[]string{"--x509-svid-ttl", "soon"}, "neither seconds nor a duration"},
		{[]string{"--jwt-svid-ttl", "1.5s"}, "not a whole number of seconds"},
		{[]string{"--jwt-svid-ttl", "1000000h"}, "too long"},
		{[]string{"--output", "yaml"}, "use text or json"},
	}
	for _, tt := range tests {
		f := &entryFlags{}
		_, err := parseFlags(t, func(fs *pflag.FlagSet) { f.register(fs, "") }, tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: got %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}

func TestEntryUpdateRequest(t *testing.T) {
	cur := &types.Entry{
		Id:             "e1",
		ParentId:       sid("example.org", "/agent"),
		SpiffeId:       sid("example.org", "/web"),
		Selectors:      []*types.Selector{{Type: "unix", Value: "uid:1000"}},
		X509SvidTtl:    600,
		DnsNames:       []string{"web"},
		Hint:           "h",
		RevisionNumber: 4,
		CreatedAt:      1700000000,
	}
	tests := []struct {
		name     string
		args     []string
		want     func(e *types.Entry)
		wantMask *types.EntryMask
		err      []string
	}{
		{
			name:     "ttl only",
			args:     []string{"--entry-id", "e1", "--x509-svid-ttl", "30m"},
			want:     func(e *types.Entry) { e.X509SvidTtl = 1800 },
			wantMask: &types.EntryMask{X509SvidTtl: true},
		},
		{
			name: "replace selectors and clear hint",
			args: []string{"--entry-id", "e1", "--selector", "unix:uid:0", "--selector", "unix:gid:0", "--hint", ""},
			want: func(e *types.Entry) {
				e.Selectors = []*types.Selector{{Type: "unix", Value: "uid:0"}, {Type: "unix", Value: "gid:0"}}
				e.Hint = ""
			},
			wantMask: &types.EntryMask{Selectors: true, Hint: true},
		},
		{
			name:     "node parent from the stored trust domain",
			args:     []string{"--entry-id", "e1", "--node"},
			want:     func(e *types.Entry) { e.ParentId = sid("example.org", "/spire/server") },
			wantMask: &types.EntryMask{ParentId: true},
		},
		{
			name:     "admin off",
			args:     []string{"--entry-id", "e1", "--admin=false", "--parentID", "spiffe://example.org/other"},
			want:     func(e *types.Entry) { e.ParentId = sid("example.org", "/other") },
			wantMask: &types.EntryMask{Admin: true, ParentId: true},
		},
		{name: "bad selector", args: []string{"--entry-id", "e1", "--selector", "nocolon"}, err: []string{"type:value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &entryFlags{}
			fs, err := parseFlags(t, func(fs *pflag.FlagSet) { f.register(fs, "") }, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			req, err := f.updateRequest(cur, fs.Changed)
			if tt.err != nil {
				assertUsage(t, err, tt.err...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := proto.Clone(cur).(*types.Entry)
			want.RevisionNumber, want.CreatedAt = 0, 0
			tt.want(want)
			assertProto(t, req, &entryv1.BatchUpdateEntryRequest{Entries: []*types.Entry{want}, InputMask: tt.wantMask})
		})
	}
}

func TestEntryFilter(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want *entryv1.ListEntriesRequest_Filter
		err  []string
	}{
		{name: "none", want: &entryv1.ListEntriesRequest_Filter{}},
		{
			name: "all filters",
			args: []string{
				"--spiffe-id", "spiffe://example.org/web", "--parent-id", "spiffe://example.org/agent",
				"--selector", "unix:uid:1", "--selector", "unix:gid:2", "--match", "exact",
				"--federates-with", "spiffe://other.org", "--match-federates-with", "any",
				"--hint", "x", "--downstream",
			},
			want: &entryv1.ListEntriesRequest_Filter{
				BySpiffeId: sid("example.org", "/web"),
				ByParentId: sid("example.org", "/agent"),
				BySelectors: &types.SelectorMatch{
					Selectors: []*types.Selector{{Type: "unix", Value: "uid:1"}, {Type: "unix", Value: "gid:2"}},
					Match:     types.SelectorMatch_MATCH_EXACT,
				},
				ByFederatesWith: &types.FederatesWithMatch{TrustDomains: []string{"other.org"}, Match: types.FederatesWithMatch_MATCH_ANY},
				ByHint:          wrapperspb.String("x"),
				ByDownstream:    wrapperspb.Bool(true),
			},
		},
		{
			name: "default match is superset; spire spellings",
			args: []string{"--selector", "a:b", "--matchSelectorsOn", "subset", "--downstream=false"},
			want: &entryv1.ListEntriesRequest_Filter{
				BySelectors:  &types.SelectorMatch{Selectors: []*types.Selector{{Type: "a", Value: "b"}}, Match: types.SelectorMatch_MATCH_SUBSET},
				ByDownstream: wrapperspb.Bool(false),
			},
		},
		{name: "entry id alone", args: []string{"--entry-id", "e1"}, want: &entryv1.ListEntriesRequest_Filter{}},
		{name: "entry id with a filter", args: []string{"--entry-id", "e1", "--spiffe-id", "spiffe://example.org/web"}, err: []string{"--entry-id cannot be combined with --spiffe-id"}},
		{name: "bad id", args: []string{"--parent-id", "nope"}, err: []string{`invalid --parent-id "nope"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &entryFilterFlags{}
			fs, err := parseFlags(t, func(fs *pflag.FlagSet) { f.register(fs, true) }, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			err = f.validateShow(fs.Changed)
			var flt *entryv1.ListEntriesRequest_Filter
			if err == nil {
				flt, err = f.listFilter(fs.Changed)
			}
			if tt.err != nil {
				assertUsage(t, err, tt.err...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertProto(t, flt, tt.want)
			// count uses the same filter, field for field.
			c := countFilter(flt)
			if !proto.Equal(c.BySpiffeId, flt.BySpiffeId) || !proto.Equal(c.BySelectors, flt.BySelectors) ||
				!proto.Equal(c.ByFederatesWith, flt.ByFederatesWith) || !proto.Equal(c.ByDownstream, flt.ByDownstream) ||
				!proto.Equal(c.ByHint, flt.ByHint) || !proto.Equal(c.ByParentId, flt.ByParentId) {
				t.Errorf("count filter %v differs from list filter %v", c, flt)
			}
		})
	}
	f := &entryFilterFlags{}
	if _, err := parseFlags(t, func(fs *pflag.FlagSet) { f.register(fs, true) }, []string{"--match", "most"}); err == nil || !strings.Contains(err.Error(), "use exact, subset, superset or any") {
		t.Errorf("bad --match: got %v", err)
	}
}

func TestAgentFilter(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want *agentv1.ListAgentsRequest_Filter
		err  []string
	}{
		{name: "none", want: &agentv1.ListAgentsRequest_Filter{}},
		{
			name: "all",
			args: []string{"--selector", "x509pop:subject:cn:a", "--match", "any", "--attestationType", "join_token",
				"--banned", "false", "--can-reattest", "true", "--expires-before", "2026-02-03T04:05:06Z"},
			want: &agentv1.ListAgentsRequest_Filter{
				ByAttestationType: "join_token",
				BySelectorMatch:   &types.SelectorMatch{Selectors: []*types.Selector{{Type: "x509pop", Value: "subject:cn:a"}}, Match: types.SelectorMatch_MATCH_ANY},
				ByBanned:          wrapperspb.Bool(false),
				ByCanReattest:     wrapperspb.Bool(true),
				ByExpiresBefore:   "2026-02-03 04:05:06 +0000 +00",
			},
		},
		{name: "bad bool", args: []string{"--banned", "maybe"}, err: []string{`invalid --banned "maybe"`}},
		{name: "bad time", args: []string{"--expires-before", "tomorrow"}, err: []string{"invalid --expires-before"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &agentFilterFlags{}
			if _, err := parseFlags(t, f.register, tt.args); err != nil {
				t.Fatal(err)
			}
			flt, err := f.filter()
			if tt.err != nil {
				assertUsage(t, err, tt.err...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertProto(t, flt, tt.want)
		})
	}
}

func TestTokenRequest(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want *agentv1.CreateJoinTokenRequest
		err  []string
	}{
		{name: "default ttl", want: &agentv1.CreateJoinTokenRequest{Ttl: 600}},
		{name: "id and duration", args: []string{"--spiffeID", "spiffe://example.org/node1", "--ttl", "1h"},
			want: &agentv1.CreateJoinTokenRequest{Ttl: 3600, AgentId: sid("example.org", "/node1")}},
		{name: "zero ttl", args: []string{"--ttl", "0"}, err: []string{"--ttl must be positive"}},
		{name: "bad id", args: []string{"--spiffe-id", "node1"}, err: []string{`invalid --spiffe-id "node1"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTokenGenerateCommand()
			c.Flags().SetNormalizeFunc(spireNormalize)
			if err := c.Flags().Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := c.PreRunE(c, nil)
			if tt.err != nil {
				assertUsage(t, err, tt.err...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	// The request itself, through the flags type.
	for _, tt := range tests {
		if tt.err != nil {
			continue
		}
		f := &tokenFlags{ttl: ttlValue{seconds: 600}}
		if _, err := parseFlags(t, func(fs *pflag.FlagSet) {
			fs.StringVar(&f.spiffeID, "spiffe-id", "", "")
			fs.Var(&f.ttl, "ttl", "")
		}, tt.args); err != nil {
			t.Fatal(err)
		}
		req, err := f.request()
		if err != nil {
			t.Fatal(err)
		}
		assertProto(t, req, tt.want)
	}
}

func TestParseTTL(t *testing.T) {
	tests := []struct {
		in   string
		want int32
		ok   bool
	}{
		{"0", 0, true}, {"3600", 3600, true}, {"1h", 3600, true}, {"90s", 90, true}, {"1h30m", 5400, true},
		{"2147483647", 2147483647, true}, {"2147483648", 0, false}, {"-1", 0, false}, {"-1h", 0, false},
		{"500ms", 0, false}, {"", 0, false}, {"1d", 0, false},
	}
	for _, tt := range tests {
		got, err := parseTTL(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseTTL(%q) = %d, %v; want %d, ok=%t", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestFlagErrorsThroughMain(t *testing.T) {
	tests := []struct {
		args  []string
		want  string
		group bool
	}{
		{[]string{"entry", "shwo"}, `unknown command "shwo" for "signet entry"; did you mean "show"?`, true},
		{[]string{"fetch", "svid"}, `unknown command "svid" for "signet fetch"`, true},
		{[]string{"entry", "show", "-spiffeIDs", "spiffe://example.org/x"}, "unknown flag -spiffeIDs: signet entry show has no --spiffe-ids (see `signet entry show --help`)", false},
		{[]string{"token", "generate", "--ttl", "soon"}, `invalid argument "soon" for "--ttl" flag`, false},
		{[]string{"bundle", "show", "--format", "der"}, "use pem or spiffe (see `signet bundle show --help`)", false},
		{[]string{"entry", "create", "extra"}, "signet entry create takes no arguments", false},
		{[]string{"healthcheck", "--timeout", "0s"}, "--timeout must be positive", false},
		{[]string{"bundle", "delete", "--id", "other.org", "--mode", "wipe"}, `unknown --mode "wipe"`, false},
		{[]string{"bundle", "set"}, "--id is required", false},
		{[]string{"entry", "delete"}, "--entry-id is required", false},
	}
	for _, tt := range tests {
		args := tt.args
		if !tt.group {
			args = append(args, "--socket-path", "/nonexistent/api.sock")
		}
		code, out, errOut := run(t, args...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tt.args, code, out, errOut, tt.want)
		}
	}
}
