package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// agentAdminCommands returns `agent list|show|evict|ban|count`, which the
// root adds under `signet agent` next to `agent run`.
func agentAdminCommands() []*cobra.Command {
	cmds := []*cobra.Command{
		newAgentListCommand(),
		newAgentShowCommand(),
		newAgentByIDCommand("evict", "Evict an agent: delete its attestation so it must attest again",
			"Agent evicted successfully", func(ctx context.Context, c *adminClient, id *types.SPIFFEID) error {
				_, err := c.agent.DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: id})
				return err
			}),
		newAgentByIDCommand("ban", "Ban an agent: it can no longer renew or re-attest until evicted",
			"Agent banned successfully", func(ctx context.Context, c *adminClient, id *types.SPIFFEID) error {
				_, err := c.agent.BanAgent(ctx, &agentv1.BanAgentRequest{Id: id})
				return err
			}),
		newAgentCountCommand(),
	}
	for _, c := range cmds {
		c.SetGlobalNormalizationFunc(spireNormalize)
		c.SetFlagErrorFunc(spireFlagError)
	}
	return cmds
}

// agentFilterFlags are the filters of `agent list` and `agent count`.
type agentFilterFlags struct {
	admin adminFlags

	selectors       []string
	match           matchFlag
	attestationType string
	banned          string
	canReattest     string
	expiresBefore   string
}

func (f *agentFilterFlags) register(fs *pflag.FlagSet) {
	f.admin.register(fs, true)
	fs.StringArrayVar(&f.selectors, "selector", nil, "a type:value node selector to filter by (repeatable; see --match)")
	f.match = "superset"
	fs.Var(&f.match, "match", "how --selector filters: exact, subset, superset (agent has all of them) or any")
	fs.StringVar(&f.attestationType, "attestation-type", "", "only agents attested with this method, e.g. join_token or x509pop")
	fs.StringVar(&f.banned, "banned", "", "true: only banned agents; false: only agents not banned")
	fs.StringVar(&f.canReattest, "can-reattest", "", "true: only agents that can re-attest; false: only those that cannot")
	fs.StringVar(&f.expiresBefore, "expires-before", "", `only agents whose SVID expires before this time (RFC 3339, or "2006-01-02 15:04:05 -0700 -07" as spire-server takes it)`)
}

func (f *agentFilterFlags) filter() (*agentv1.ListAgentsRequest_Filter, error) {
	flt := &agentv1.ListAgentsRequest_Filter{ByAttestationType: f.attestationType}
	if len(f.selectors) > 0 {
		sels, err := parseSelectors("selector", f.selectors)
		if err != nil {
			return nil, err
		}
		flt.BySelectorMatch = &types.SelectorMatch{Selectors: sels, Match: f.match.selectorMatch()}
	}
	var err error
	if flt.ByBanned, err = optionalBool("banned", f.banned); err != nil {
		return nil, err
	}
	if flt.ByCanReattest, err = optionalBool("can-reattest", f.canReattest); err != nil {
		return nil, err
	}
	if f.expiresBefore != "" {
		// The API takes spire-server's layout; accept RFC 3339 as well.
		const spireLayout = "2006-01-02 15:04:05 -0700 -07"
		t, err := time.Parse(spireLayout, f.expiresBefore)
		if err != nil {
			t, err = time.Parse(time.RFC3339, f.expiresBefore)
		}
		if err != nil {
			return nil, usageErrorf("invalid --expires-before %q: want RFC 3339 like 2026-01-02T15:04:05Z", f.expiresBefore)
		}
		flt.ByExpiresBefore = t.Format(spireLayout)
	}
	return flt, nil
}

func optionalBool(flag, s string) (*wrapperspb.BoolValue, error) {
	if s == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return nil, usageErrorf("invalid --%s %q: want true or false", flag, s)
	}
	return wrapperspb.Bool(b), nil
}

func newAgentListCommand() *cobra.Command {
	f := &agentFilterFlags{}
	var flt *agentv1.ListAgentsRequest_Filter
	c := &cobra.Command{
		Use:   "list",
		Short: "List attested agents, optionally filtered",
		Args:  noArgs,
		PreRunE: func(*cobra.Command, []string) (err error) {
			flt, err = f.filter()
			return err
		},
		RunE: withAdmin(&f.admin, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			resp := &agentv1.ListAgentsResponse{}
			token := ""
			for page := 0; ; page++ {
				if page == maxPages {
					return fmt.Errorf("listing agents: the server returned more than %d pages", maxPages)
				}
				r, err := c.agent.ListAgents(ctx, &agentv1.ListAgentsRequest{Filter: flt, PageSize: listPageSize, PageToken: token})
				if err != nil {
					return c.rpcErr("listing agents", err)
				}
				resp.Agents = append(resp.Agents, r.GetAgents()...)
				if token = r.GetNextPageToken(); token == "" {
					break
				}
			}
			out := cmd.OutOrStdout()
			if f.admin.output.json() {
				return writeProtoJSON(out, resp)
			}
			printAgentList(out, resp.Agents)
			return nil
		}),
	}
	f.register(c.Flags())
	return c
}

func printAgentList(w io.Writer, agents []*types.Agent) {
	if len(agents) == 0 {
		fmt.Fprintln(w, "No attested agents found")
		return
	}
	fmt.Fprintf(w, "Found %s:\n\n", pluralize(len(agents), "attested agent", "attested agents"))
	for _, a := range agents {
		printAgent(w, a)
	}
}

// printAgent prints an agent in spire-server's layout.
func printAgent(w io.Writer, a *types.Agent) {
	fmt.Fprintf(w, "SPIFFE ID         : %s\n", idString(a.GetId()))
	fmt.Fprintf(w, "Attestation type  : %s\n", a.GetAttestationType())
	fmt.Fprintf(w, "Expiration time   : %s\n", time.Unix(a.GetX509SvidExpiresAt(), 0).UTC())
	if a.GetBanned() {
		fmt.Fprintf(w, "Banned            : true\n")
	} else {
		fmt.Fprintf(w, "Serial number     : %s\n", a.GetX509SvidSerialNumber())
	}
	fmt.Fprintf(w, "Can re-attest     : %t\n", a.GetCanReattest())
	fmt.Fprintln(w)
}

// agentIDFlags is the --spiffe-id of show, evict and ban.
type agentIDFlags struct {
	admin    adminFlags
	spiffeID string
	id       *types.SPIFFEID
}

func (f *agentIDFlags) register(fs *pflag.FlagSet) {
	f.admin.register(fs, true)
	fs.StringVar(&f.spiffeID, "spiffe-id", "", "the agent's SPIFFE `ID` (see 'signet agent list')")
}

func (f *agentIDFlags) parse(*cobra.Command, []string) (err error) {
	if f.spiffeID == "" {
		return usageErrorf("--spiffe-id is required: the agent's SPIFFE ID (see `signet agent list`)")
	}
	f.id, err = parseID("spiffe-id", f.spiffeID)
	return err
}

func newAgentShowCommand() *cobra.Command {
	f := &agentIDFlags{}
	c := &cobra.Command{
		Use:     "show",
		Short:   "Show an attested agent",
		Args:    noArgs,
		PreRunE: f.parse,
		RunE: withAdmin(&f.admin, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			a, err := c.agent.GetAgent(ctx, &agentv1.GetAgentRequest{Id: f.id})
			if err != nil {
				return c.rpcErr(fmt.Sprintf("fetching agent %s", f.spiffeID), err)
			}
			out := cmd.OutOrStdout()
			if f.admin.output.json() {
				return writeProtoJSON(out, a)
			}
			fmt.Fprintf(out, "Found an attested agent given its SPIFFE ID\n\n")
			printAgent(out, a)
			for _, s := range a.GetSelectors() {
				fmt.Fprintf(out, "Selectors         : %s:%s\n", s.GetType(), s.GetValue())
			}
			return nil
		}),
	}
	f.register(c.Flags())
	return c
}

// newAgentByIDCommand builds evict and ban: one RPC on one agent ID.
func newAgentByIDCommand(name, short, done string, call func(context.Context, *adminClient, *types.SPIFFEID) error) *cobra.Command {
	f := &agentIDFlags{}
	c := &cobra.Command{
		Use:     name,
		Short:   short,
		Args:    noArgs,
		PreRunE: f.parse,
		RunE: withAdmin(&f.admin, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			if err := call(ctx, c, f.id); err != nil {
				return c.rpcErr(fmt.Sprintf("%s agent %s", verbing(name), f.spiffeID), err)
			}
			if f.admin.output.json() {
				return writeJSON(cmd.OutOrStdout(), map[string]any{})
			}
			fmt.Fprintln(cmd.OutOrStdout(), done)
			return nil
		}),
	}
	f.register(c.Flags())
	return c
}

func verbing(name string) string {
	switch name {
	case "evict":
		return "evicting"
	case "ban":
		return "banning"
	}
	return name
}

func newAgentCountCommand() *cobra.Command {
	f := &agentFilterFlags{}
	var flt *agentv1.ListAgentsRequest_Filter
	c := &cobra.Command{
		Use:   "count",
		Short: "Count attested agents, optionally filtered",
		Args:  noArgs,
		PreRunE: func(*cobra.Command, []string) (err error) {
			flt, err = f.filter()
			return err
		},
		RunE: withAdmin(&f.admin, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			resp, err := c.agent.CountAgents(ctx, &agentv1.CountAgentsRequest{Filter: &agentv1.CountAgentsRequest_Filter{
				ByAttestationType: flt.GetByAttestationType(),
				BySelectorMatch:   flt.GetBySelectorMatch(),
				ByBanned:          flt.GetByBanned(),
				ByCanReattest:     flt.GetByCanReattest(),
				ByExpiresBefore:   flt.GetByExpiresBefore(),
			}})
			if err != nil {
				return c.rpcErr("counting agents", err)
			}
			if f.admin.output.json() {
				return writeProtoJSON(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintln(cmd.OutOrStdout(), pluralize(int(resp.GetCount()), "attested agent", "attested agents"))
			return nil
		}),
	}
	f.register(c.Flags())
	return c
}
