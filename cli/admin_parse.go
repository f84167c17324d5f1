package cli

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// usageErrorf builds a usageError (exit code 2).
func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// noArgs rejects positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments, got %q (values go in flags; see `%s --help`)", cmd.CommandPath(), args, cmd.CommandPath())
	}
	return nil
}

// groupRun is the run function of a command that only groups
// subcommands: without arguments it prints help; an unknown subcommand is
// a usage error.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf("; did you mean %q?", s[0])
	}
	return usageErrorf("%s (see `%s --help`)", msg, cmd.CommandPath())
}

// parseID parses a SPIFFE ID given in --flag.
func parseID(flag, s string) (*types.SPIFFEID, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return nil, usageErrorf("invalid --%s %q: %v (want spiffe://<trust-domain>/<path>)", flag, s, err)
	}
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}, nil
}

// parseTrustDomain accepts "example.org" or "spiffe://example.org".
func parseTrustDomain(flag, s string) (spiffeid.TrustDomain, error) {
	td, err := spiffeid.TrustDomainFromString(s)
	if err != nil {
		return spiffeid.TrustDomain{}, usageErrorf("invalid --%s %q: %v (want a trust domain name like example.org)", flag, s, err)
	}
	return td, nil
}

// parseSelectors parses "type:value" selectors; the value may contain
// colons (unix:uid:1000 is type unix, value uid:1000).
func parseSelectors(flag string, in []string) ([]*types.Selector, error) {
	out := make([]*types.Selector, 0, len(in))
	for _, s := range in {
		typ, value, ok := strings.Cut(s, ":")
		if !ok || typ == "" || value == "" {
			return nil, usageErrorf("invalid --%s %q: must be formatted as type:value, e.g. unix:uid:1000", flag, s)
		}
		out = append(out, &types.Selector{Type: typ, Value: value})
	}
	return out, nil
}

// ttlValue is a TTL flag: a Go duration ("1h", "90s") or whole seconds
// ("3600"), stored in seconds and bounded to int32 like the API field.
type ttlValue struct{ seconds int32 }

var _ pflag.Value = (*ttlValue)(nil)

func (t *ttlValue) String() string { return strconv.Itoa(int(t.seconds)) }
func (t *ttlValue) Type() string   { return "duration|seconds" }

func (t *ttlValue) Set(s string) error {
	secs, err := parseTTL(s)
	if err != nil {
		return err
	}
	t.seconds = secs
	return nil
}

func parseTTL(s string) (int32, error) {
	var secs int64
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		secs = n
	} else {
		d, derr := time.ParseDuration(s)
		if derr != nil {
			return 0, fmt.Errorf("%q is neither seconds nor a duration like 1h or 90s", s)
		}
		if d%time.Second != 0 {
			return 0, fmt.Errorf("%q is not a whole number of seconds", s)
		}
		secs = int64(d / time.Second)
	}
	if secs < 0 {
		return 0, errors.New("must not be negative")
	}
	if secs > math.MaxInt32 {
		return 0, fmt.Errorf("%d seconds is too long (at most %d)", secs, math.MaxInt32)
	}
	return int32(secs), nil
}

// matchFlag is a --match flag value: exact, subset, superset or any.
type matchFlag string

var _ pflag.Value = (*matchFlag)(nil)

func (m *matchFlag) String() string { return string(*m) }
func (m *matchFlag) Type() string   { return "exact|subset|superset|any" }

func (m *matchFlag) Set(s string) error {
	s = strings.ToLower(s)
	switch s {
	case "exact", "subset", "superset", "any":
		*m = matchFlag(s)
		return nil
	}
	return fmt.Errorf("unknown match mode %q: use exact, subset, superset or any", s)
}

func (m matchFlag) selectorMatch() types.SelectorMatch_MatchBehavior {
	switch m {
	case "exact":
		return types.SelectorMatch_MATCH_EXACT
	case "subset":
		return types.SelectorMatch_MATCH_SUBSET
	case "any":
		return types.SelectorMatch_MATCH_ANY
	}
	return types.SelectorMatch_MATCH_SUPERSET
}

func (m matchFlag) federatesWithMatch() types.FederatesWithMatch_MatchBehavior {
	switch m {
	case "exact":
		return types.FederatesWithMatch_MATCH_EXACT
	case "subset":
		return types.FederatesWithMatch_MATCH_SUBSET
	case "any":
		return types.FederatesWithMatch_MATCH_ANY
	}
	return types.FederatesWithMatch_MATCH_SUPERSET
}

// spireNormalize is a flag normalization func that accepts spire-server's
// camelCase flag names, so that `--spiffeID` works like `--spiffe-id`.
func spireNormalize(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	switch name {
	case "spiffeID":
		name = "spiffe-id"
	case "parentID":
		name = "parent-id"
	case "entryID":
		name = "entry-id"
	case "entryExpiry":
		name = "entry-expiry"
	case "x509SVIDTTL":
		name = "x509-svid-ttl"
	case "jwtSVIDTTL":
		name = "jwt-svid-ttl"
	case "federatesWith":
		name = "federates-with"
	case "socketPath":
		name = "socket-path"
	case "matchSelectorsOn":
		name = "match"
	case "matchFederatesWithOn":
		name = "match-federates-with"
	case "attestationType":
		name = "attestation-type"
	case "canReattest":
		name = "can-reattest"
	default:
		name = kebab(name)
	}
	return pflag.NormalizedName(name)
}

// kebab turns a camelCase flag name into Signet's kebab-case
// (joinToken → join-token, authorityID → authority-id); kebab-case names
// are unchanged.
func kebab(name string) string {
	var b strings.Builder
	for i, r := range name {
		if r >= 'A' && r <= 'Z' {
			if i > 0 && (name[i-1] >= 'a' && name[i-1] <= 'z' || name[i-1] >= '0' && name[i-1] <= '9') {
				b.WriteByte('-')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// spireOnlyFlags are spire-server and spire-agent flags with no Signet
// flag of the same name, and what to use instead.
func spireOnlyFlags() map[string]string {
	return map[string]string{
		"serverPort":     "Signet takes the port with the host: --server-address host:port (agent run) or --bind-address host:port (server run)",
		"logFile":        "Signet logs to stderr; redirect it, or let systemd or the container runtime collect it",
		"trustBundleUrl": "not supported: give the bundle as a file with --trust-bundle",
	}
}

// spireFlagError is the flag error func of Signet's admin and fetch
// commands. pflag reads spire-server's single-dash long flags (-spiffeID)
// as clusters of shorthands; say plainly to use two dashes.
func spireFlagError(c *cobra.Command, err error) error {
	msg := err.Error()
	if i := strings.Index(msg, " in -"); strings.HasPrefix(msg, "unknown shorthand flag") && i >= 0 {
		arg := msg[i+len(" in "):]
		name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if hint, ok := spireOnlyFlags()[name]; ok {
			return usageErrorf("unknown flag %s: %s (see `%s --help`)", arg, hint, c.CommandPath())
		}
		return usageErrorf("unknown flag %s: %s has no --%s (see `%s --help`)", arg, c.CommandPath(), spireNormalize(nil, name), c.CommandPath())
	}
	return usageErrorf("%v (see `%s --help`)", err, c.CommandPath())
}
