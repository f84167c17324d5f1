package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// entryFilterFlags are the filters of `entry show` and `entry count`.
type entryFilterFlags struct {
	admin adminFlags

	entryID       string
	spiffeID      string
	parentID      string
	selectors     []string
	match         matchFlag
	federatesWith []string
	matchFed      matchFlag
	hint          string
	downstream    bool
}

func (f *entryFilterFlags) register(fs *pflag.FlagSet, withEntryID bool) {
	f.admin.register(fs, true)
	if withEntryID {
		fs.StringVar(&f.entryID, "entry-id", "", "show only the entry with this ID (not combinable with other filters)")
	}
	fs.StringVar(&f.spiffeID, "spiffe-id", "", "only entries with this SPIFFE ID")
	fs.StringVar(&f.parentID, "parent-id", "", "only entries with this parent ID")
	fs.StringArrayVar(&f.selectors, "selector", nil, "a type:value selector to filter by (repeatable; see --match)")
	f.match = "superset"
	fs.Var(&f.match, "match", "how --selector filters: exact, subset, superset (entry has all of them) or any")
	fs.StringArrayVar(&f.federatesWith, "federates-with", nil, "a trust domain to filter by (repeatable; see --match-federates-with)")
	f.matchFed = "superset"
	fs.Var(&f.matchFed, "match-federates-with", "how --federates-with filters: exact, subset, superset or any")
	fs.StringVar(&f.hint, "hint", "", "only entries with this hint")
	fs.BoolVar(&f.downstream, "downstream", false, "only downstream entries (--downstream=false: only non-downstream ones)")
}

// listFilter builds the ListEntries filter from the flags.
func (f *entryFilterFlags) listFilter(changed func(string) bool) (*entryv1.ListEntriesRequest_Filter, error) {
	flt := &entryv1.ListEntriesRequest_Filter{}
	if f.spiffeID != "" {
		id, err := parseID("spiffe-id", f.spiffeID)
		if err != nil {
			return nil, err
		}
		flt.BySpiffeId = id
	}
	if f.parentID != "" {
		id, err := parseID("parent-id", f.parentID)
		if err != nil {
			return nil, err
		}
		flt.ByParentId = id
	}
	if len(f.selectors) > 0 {
		sels, err := parseSelectors("selector", f.selectors)
		if err != nil {
			return nil, err
		}
		flt.BySelectors = &types.SelectorMatch{Selectors: sels, Match: f.match.selectorMatch()}
	}
	if len(f.federatesWith) > 0 {
		tds := make([]string, 0, len(f.federatesWith))
		for _, s := range f.federatesWith {
			td, err := parseTrustDomain("federates-with", s)
			if err != nil {
				return nil, err
			}
			tds = append(tds, td.Name())
		}
		flt.ByFederatesWith = &types.FederatesWithMatch{TrustDomains: tds, Match: f.matchFed.federatesWithMatch()}
	}
	if changed("hint") {
		flt.ByHint = wrapperspb.String(f.hint)
	}
	if changed("downstream") {
		flt.ByDownstream = wrapperspb.Bool(f.downstream)
	}
	return flt, nil
}

func (f *entryFilterFlags) validateShow(changed func(string) bool) error {
	if f.entryID == "" {
		return nil
	}
	for _, n := range []string{"spiffe-id", "parent-id", "selector", "federates-with", "hint", "downstream"} {
		if changed(n) {
			return usageErrorf("--entry-id cannot be combined with --%s: an entry ID names one entry", n)
		}
	}
	return nil
}

func newEntryShowCommand() *cobra.Command {
	f := &entryFilterFlags{}
	var flt *entryv1.ListEntriesRequest_Filter
	c := &cobra.Command{
		Use:   "show",
		Short: "Show registration entries, optionally filtered",
		Example: `  signet entry show
  signet entry show --spiffe-id spiffe://example.org/web
  signet entry show --selector unix:uid:1000 --match any -o json`,
		Args: noArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) (err error) {
			if err := f.validateShow(cmd.Flags().Changed); err != nil {
				return err
			}
			flt, err = f.listFilter(cmd.Flags().Changed)
			return err
		},
		RunE: withAdmin(&f.admin, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			resp := &entryv1.ListEntriesResponse{}
			if f.entryID != "" {
				e, err := c.entry.GetEntry(ctx, &entryv1.GetEntryRequest{Id: f.entryID})
				if err != nil {
					return c.rpcErr(fmt.Sprintf("fetching entry %q", f.entryID), err)
				}
				resp.Entries = []*types.Entry{e}
			} else {
				entries, err := listEntries(ctx, c, flt)
				if err != nil {
					return err
				}
				resp.Entries = entries
			}
			sortEntries(resp.Entries)
			out := cmd.OutOrStdout()
			if f.admin.output.json() {
				return writeProtoJSON(out, resp)
			}
			printEntries(out, resp.Entries)
			return nil
		}),
	}
	f.register(c.Flags(), true)
	return c
}

// listEntries fetches every page of ListEntries.
func listEntries(ctx context.Context, c *adminClient, flt *entryv1.ListEntriesRequest_Filter) ([]*types.Entry, error) {
	var all []*types.Entry
	token := ""
	for range maxPages {
		resp, err := c.entry.ListEntries(ctx, &entryv1.ListEntriesRequest{Filter: flt, PageSize: listPageSize, PageToken: token})
		if err != nil {
			return nil, c.rpcErr("listing entries", err)
		}
		all = append(all, resp.GetEntries()...)
		if token = resp.GetNextPageToken(); token == "" {
			return all, nil
		}
	}
	return nil, fmt.Errorf("listing entries: the server returned more than %d pages", maxPages)
}

func printEntries(w io.Writer, entries []*types.Entry) {
	fmt.Fprintf(w, "Found %s\n", pluralize(len(entries), "entry", "entries"))
	for _, e := range entries {
		printEntry(w, e)
	}
}

// sortEntries orders entries by SPIFFE ID, parent ID and entry ID, and
// each entry's selectors, so that output is stable.
func sortEntries(entries []*types.Entry) {
	for _, e := range entries {
		slices.SortFunc(e.Selectors, func(a, b *types.Selector) int {
			return cmp.Or(cmp.Compare(a.GetType(), b.GetType()), cmp.Compare(a.GetValue(), b.GetValue()))
		})
	}
	slices.SortStableFunc(entries, func(a, b *types.Entry) int {
		return cmp.Or(
			cmp.Compare(idString(a.GetSpiffeId()), idString(b.GetSpiffeId())),
			cmp.Compare(idString(a.GetParentId()), idString(b.GetParentId())),
			cmp.Compare(a.GetId(), b.GetId()),
		)
	})
}

func newEntryCountCommand() *cobra.Command {
	f := &entryFilterFlags{}
	var flt *entryv1.ListEntriesRequest_Filter
	c := &cobra.Command{
		Use:   "count",
		Short: "Count registration entries, optionally filtered",
		Args:  noArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) (err error) {
			flt, err = f.listFilter(cmd.Flags().Changed)
			return err
		},
		RunE: withAdmin(&f.admin, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			resp, err := c.entry.CountEntries(ctx, &entryv1.CountEntriesRequest{Filter: countFilter(flt)})
			if err != nil {
				return c.rpcErr("counting entries", err)
			}
			if f.admin.output.json() {
				return writeProtoJSON(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", pluralize(int(resp.GetCount()), "registration entry", "registration entries"))
			return nil
		}),
	}
	f.register(c.Flags(), false)
	return c
}

func countFilter(f *entryv1.ListEntriesRequest_Filter) *entryv1.CountEntriesRequest_Filter {
	return &entryv1.CountEntriesRequest_Filter{
		BySpiffeId:      f.GetBySpiffeId(),
		ByParentId:      f.GetByParentId(),
		BySelectors:     f.GetBySelectors(),
		ByFederatesWith: f.GetByFederatesWith(),
		ByHint:          f.GetByHint(),
		ByDownstream:    f.GetByDownstream(),
	}
}
