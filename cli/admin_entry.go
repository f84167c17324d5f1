package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/signet-id/signet/spireid"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/proto"
)

// serverIDPath is the path of a server's SPIFFE ID; entries parented to it
// are node entries (aliases), as in SPIRE.
const serverIDPath = spireid.ServerPath

// listPageSize is the page size used when listing; every page is fetched.
const listPageSize = 500

// maxPages bounds pagination loops against a server that never stops.
const maxPages = 100000

func newEntryCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "entry",
		Short: "Manage registration entries (create, show, update, delete, count)",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	c.AddCommand(
		newEntryCreateCommand(),
		newEntryShowCommand(),
		newEntryUpdateCommand(),
		newEntryDeleteCommand(),
		newEntryCountCommand(),
	)
	c.SetGlobalNormalizationFunc(spireNormalize)
	c.SetFlagErrorFunc(spireFlagError)
	return c
}

// entryFlags are the fields of an entry as flags (create and update).
type entryFlags struct {
	admin adminFlags

	entryID       string
	spiffeID      string
	parentID      string
	node          bool
	selectors     []string
	x509TTL       ttlValue
	jwtTTL        ttlValue
	dns           []string
	federatesWith []string
	isAdmin       bool
	downstream    bool
	hint          string
	expiry        int64
}

func (f *entryFlags) register(fs *pflag.FlagSet, entryIDHelp string) {
	f.admin.register(fs, true)
	fs.StringVar(&f.entryID, "entry-id", "", entryIDHelp)
	fs.StringVar(&f.spiffeID, "spiffe-id", "", "the SPIFFE ID this entry issues, e.g. spiffe://example.org/web")
	fs.StringVar(&f.parentID, "parent-id", "", "the SPIFFE ID of the entry's parent: an agent's ID, or a node alias")
	fs.BoolVar(&f.node, "node", false, "make this a node entry (alias): its parent is the server's ID spiffe://<td>/spire/server and it matches agents by node selectors")
	fs.StringArrayVar(&f.selectors, "selector", nil, "a type:value selector, e.g. unix:uid:1000 (repeatable; all must match)")
	fs.Var(&f.x509TTL, "x509-svid-ttl", "lifetime of X509-SVIDs for this entry, as a duration (1h) or seconds (3600); 0 = server default")
	fs.Var(&f.jwtTTL, "jwt-svid-ttl", "lifetime of JWT-SVIDs for this entry, as a duration (5m) or seconds (300); 0 = server default")
	fs.StringArrayVar(&f.dns, "dns", nil, "a DNS name to include in the X509-SVID (repeatable)")
	fs.StringArrayVar(&f.federatesWith, "federates-with", nil, "a trust domain whose bundle workloads of this entry receive, e.g. spiffe://other.org (repeatable)")
	fs.BoolVar(&f.isAdmin, "admin", false, "grant this entry's SPIFFE ID access to the server's admin APIs")
	fs.BoolVar(&f.downstream, "downstream", false, "the entry describes a downstream server (its SVID may sign)")
	fs.StringVar(&f.hint, "hint", "", "a hint to tell apart entries with the same SPIFFE ID")
	fs.Int64Var(&f.expiry, "entry-expiry", 0, "when the entry expires and is pruned, in seconds since the Unix epoch (0 = never)")
}

// entry builds the entry described by the flags. Only fields whose flag
// is set (per changed) are filled, and named in the returned mask; create
// passes a changed that is always true. td is the trust domain of a node
// entry's parent when --spiffe-id is not given (update).
func (f *entryFlags) entry(changed func(string) bool, td string) (*types.Entry, *types.EntryMask, error) {
	e := &types.Entry{Id: f.entryID}
	m := &types.EntryMask{}
	if changed("spiffe-id") {
		id, err := parseID("spiffe-id", f.spiffeID)
		if err != nil {
			return nil, nil, err
		}
		e.SpiffeId, m.SpiffeId = id, true
	}
	switch {
	case f.node && changed("parent-id") && f.parentID != "":
		return nil, nil, usageErrorf("--node and --parent-id are exclusive: a node entry's parent is the server's ID")
	case f.node:
		if e.SpiffeId != nil {
			td = e.SpiffeId.TrustDomain
		}
		if td == "" {
			return nil, nil, usageErrorf("--node needs --spiffe-id (the parent is the server ID of its trust domain)")
		}
		e.ParentId, m.ParentId = &types.SPIFFEID{TrustDomain: td, Path: serverIDPath}, true
	case changed("parent-id"):
		id, err := parseID("parent-id", f.parentID)
		if err != nil {
			return nil, nil, err
		}
		e.ParentId, m.ParentId = id, true
	}
	if changed("selector") {
		sels, err := parseSelectors("selector", f.selectors)
		if err != nil {
			return nil, nil, err
		}
		e.Selectors, m.Selectors = sels, true
	}
	if changed("x509-svid-ttl") {
		e.X509SvidTtl, m.X509SvidTtl = f.x509TTL.seconds, true
	}
	if changed("jwt-svid-ttl") {
		e.JwtSvidTtl, m.JwtSvidTtl = f.jwtTTL.seconds, true
	}
	if changed("dns") {
		e.DnsNames, m.DnsNames = slices.Clone(f.dns), true
	}
	if changed("federates-with") {
		if f.node && len(f.federatesWith) > 0 {
			return nil, nil, usageErrorf("node entries cannot federate: drop --federates-with or --node")
		}
		tds := make([]string, 0, len(f.federatesWith))
		for _, s := range f.federatesWith {
			td, err := parseTrustDomain("federates-with", s)
			if err != nil {
				return nil, nil, err
			}
			tds = append(tds, td.Name())
		}
		e.FederatesWith, m.FederatesWith = tds, true
	}
	if changed("admin") {
		e.Admin, m.Admin = f.isAdmin, true
	}
	if changed("downstream") {
		e.Downstream, m.Downstream = f.downstream, true
	}
	if changed("hint") {
		e.Hint, m.Hint = f.hint, true
	}
	if changed("entry-expiry") {
		if f.expiry < 0 {
			return nil, nil, usageErrorf("invalid --entry-expiry %d: must be seconds since the Unix epoch, or 0 for never", f.expiry)
		}
		e.ExpiresAt, m.ExpiresAt = f.expiry, true
	}
	return e, m, nil
}

// createRequest validates the flags of `entry create` and builds the request.
func (f *entryFlags) createRequest() (*entryv1.BatchCreateEntryRequest, error) {
	if f.spiffeID == "" {
		return nil, usageErrorf("--spiffe-id is required: the SPIFFE ID the entry issues")
	}
	if f.parentID == "" && !f.node {
		return nil, usageErrorf("--parent-id is required (the agent's SPIFFE ID), or --node for a node entry")
	}
	if len(f.selectors) == 0 {
		return nil, usageErrorf("at least one --selector is required, e.g. --selector unix:uid:1000")
	}
	e, _, err := f.entry(func(string) bool { return true }, "")
	if err != nil {
		return nil, err
	}
	return &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{e}}, nil
}

// updateRequest validates the flags of `entry update` and builds the
// request: cur is the entry as stored, changed says which flags were
// given. Only those fields are changed (and named in the input mask).
func (f *entryFlags) updateRequest(cur *types.Entry, changed func(string) bool) (*entryv1.BatchUpdateEntryRequest, error) {
	e, m, err := f.entry(changed, cur.GetSpiffeId().GetTrustDomain())
	if err != nil {
		return nil, err
	}
	// Fill the fields not being changed from the stored entry, so that a
	// server that ignores the input mask still keeps them.
	merged := proto.Clone(cur).(*types.Entry)
	merged.Id = f.entryID
	merged.RevisionNumber, merged.CreatedAt = 0, 0
	if m.SpiffeId {
		merged.SpiffeId = e.SpiffeId
	}
	if m.ParentId {
		merged.ParentId = e.ParentId
	}
	if m.Selectors {
		merged.Selectors = e.Selectors
	}
	if m.X509SvidTtl {
		merged.X509SvidTtl = e.X509SvidTtl
	}
	if m.JwtSvidTtl {
		merged.JwtSvidTtl = e.JwtSvidTtl
	}
	if m.DnsNames {
		merged.DnsNames = e.DnsNames
	}
	if m.FederatesWith {
		merged.FederatesWith = e.FederatesWith
	}
	if m.Admin {
		merged.Admin = e.Admin
	}
	if m.Downstream {
		merged.Downstream = e.Downstream
	}
	if m.Hint {
		merged.Hint = e.Hint
	}
	if m.ExpiresAt {
		merged.ExpiresAt = e.ExpiresAt
	}
	return &entryv1.BatchUpdateEntryRequest{Entries: []*types.Entry{merged}, InputMask: m}, nil
}

// updatableFlags are the flags `entry update` can change.
func updatableFlags() []string {
	return []string{"spiffe-id", "parent-id", "node", "selector", "x509-svid-ttl", "jwt-svid-ttl",
		"dns", "federates-with", "admin", "downstream", "hint", "entry-expiry"}
}

func newEntryCreateCommand() *cobra.Command {
	f := &entryFlags{}
	var (
		reqs      []*entryv1.BatchCreateEntryRequest
		dataPath  string
		storeSVID bool
	)
	c := &cobra.Command{
		Use:   "create",
		Short: "Create a registration entry, or many from spire-server's entries JSON (--data)",
		Example: `  signet entry create --parent-id spiffe://example.org/spire/agent/join_token/T \
      --spiffe-id spiffe://example.org/web --selector unix:uid:1000
  signet entry create --node --spiffe-id spiffe://example.org/nodes/k8s --selector k8s_psat:cluster:prod
  signet entry create --data entries.json   # {"entries": [{"spiffe_id": ..., "parent_id": ..., "selectors": [...]}]}`,
		Args: noArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if storeSVID {
				return usageErrorf("--store-svid is not supported: Signet has no SVID stores (workloads fetch SVIDs over the Workload API)")
			}
			if dataPath == "" {
				req, err := f.createRequest()
				reqs = []*entryv1.BatchCreateEntryRequest{req}
				return err
			}
			for _, name := range updatableFlags() {
				if cmd.Flags().Changed(name) {
					return usageErrorf("--data and --%s are exclusive: the file describes every field of its entries", name)
				}
			}
			entries, err := readEntryData(dataPath, cmd.InOrStdin())
			reqs = entryDataRequests(entries)
			return err
		},
		RunE: withAdmin(&f.admin, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			all := &entryv1.BatchCreateEntryResponse{}
			var sent []*types.Entry
			for _, req := range reqs {
				resp, err := c.entry.BatchCreateEntry(ctx, req)
				if err != nil {
					return c.rpcErr(fmt.Sprintf("creating entries (%d of %d sent)", len(sent), countEntries(reqs)), err)
				}
				sent = append(sent, req.Entries...)
				all.Results = append(all.Results, resp.GetResults()...)
			}
			existing := fillFailedEntries(sent, all.GetResults())
			return printEntryResults(cmd.OutOrStdout(), cmd.ErrOrStderr(), f.admin.output, "create", all, all.GetResults(), existing)
		}),
	}
	f.register(c.Flags(), "a custom ID for the entry (default: the server generates one)")
	c.Flags().StringVar(&dataPath, "data", "", "`FILE` of entries in spire-server's JSON format to create instead of one from flags ('-' reads stdin)")
	c.Flags().BoolVar(&storeSVID, "store-svid", false, "refused: Signet has no SVID stores (spire-server's -storeSVID)")
	return c
}

func countEntries(reqs []*entryv1.BatchCreateEntryRequest) int {
	n := 0
	for _, r := range reqs {
		n += len(r.Entries)
	}
	return n
}

func newEntryUpdateCommand() *cobra.Command {
	f := &entryFlags{}
	c := &cobra.Command{
		Use:   "update",
		Short: "Update fields of a registration entry",
		Long: `Update changes only the fields whose flags are given; the others keep their
values. Repeatable flags (--selector, --dns, --federates-with) replace the whole list.`,
		Example: `  signet entry update --entry-id ID --x509-svid-ttl 30m
  signet entry update --entry-id ID --selector unix:uid:1000 --selector unix:gid:1000`,
		Args: noArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if f.entryID == "" {
				return usageErrorf("--entry-id is required (find it with `signet entry show`)")
			}
			for _, name := range updatableFlags() {
				if cmd.Flags().Changed(name) {
					return nil
				}
			}
			return usageErrorf("nothing to update: give at least one of --%s", strings.Join(updatableFlags(), ", --"))
		},
		RunE: withAdmin(&f.admin, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			cur, err := c.entry.GetEntry(ctx, &entryv1.GetEntryRequest{Id: f.entryID})
			if err != nil {
				return c.rpcErr(fmt.Sprintf("fetching entry %q", f.entryID), err)
			}
			req, err := f.updateRequest(cur, cmd.Flags().Changed)
			if err != nil {
				return err
			}
			resp, err := c.entry.BatchUpdateEntry(ctx, req)
			if err != nil {
				return c.rpcErr("updating entry", err)
			}
			existing := fillFailedEntries(req.Entries, resp.GetResults())
			return printEntryResults(cmd.OutOrStdout(), cmd.ErrOrStderr(), f.admin.output, "update", resp, resp.GetResults(), existing)
		}),
	}
	f.register(c.Flags(), "the ID of the entry to update (required)")
	return c
}

func newEntryDeleteCommand() *cobra.Command {
	var (
		af  adminFlags
		ids []string
	)
	c := &cobra.Command{
		Use:     "delete",
		Short:   "Delete registration entries by ID",
		Example: `  signet entry delete --entry-id ID [--entry-id ID2 ...]`,
		Args:    noArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if len(ids) == 0 {
				return usageErrorf("--entry-id is required (find IDs with `signet entry show`)")
			}
			for _, id := range ids {
				if id == "" {
					return usageErrorf("--entry-id must not be empty")
				}
			}
			return nil
		},
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			resp, err := c.entry.BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: ids})
			if err != nil {
				return c.rpcErr("deleting entries", err)
			}
			return printDeleteResults(cmd.OutOrStdout(), cmd.ErrOrStderr(), af.output, resp)
		}),
	}
	af.register(c.Flags(), true)
	c.Flags().StringArrayVar(&ids, "entry-id", nil, "the ID of an entry to delete (repeatable)")
	return c
}
