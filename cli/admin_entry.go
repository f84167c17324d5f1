package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/spireid"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
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
	var req *entryv1.BatchCreateEntryRequest
	c := &cobra.Command{
		Use:   "create",
		Short: "Create a registration entry",
		Example: `  signet entry create --parent-id spiffe://example.org/spire/agent/join_token/T \
      --spiffe-id spiffe://example.org/web --selector unix:uid:1000
  signet entry create --node --spiffe-id spiffe://example.org/nodes/k8s --selector k8s_psat:cluster:prod`,
		Args: noArgs,
		PreRunE: func(*cobra.Command, []string) (err error) {
			req, err = f.createRequest()
			return err
		},
		RunE: withAdmin(&f.admin, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			resp, err := c.entry.BatchCreateEntry(ctx, req)
			if err != nil {
				return c.rpcErr("creating entry", err)
			}
			existing := fillFailedEntries(req.Entries, resp.GetResults())
			return printEntryResults(cmd.OutOrStdout(), cmd.ErrOrStderr(), f.admin.output, "create", resp, resp.GetResults(), existing)
		}),
	}
	f.register(c.Flags(), "a custom ID for the entry (default: the server generates one)")
	return c
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

// entryResult is the common shape of create and update results.
type entryResult interface {
	GetStatus() *types.Status
	GetEntry() *types.Entry
}

// fillFailedEntries puts the requested entry into each failed result, as
// spire-server does, so that the output shows what was refused. For an
// AlreadyExists failure the server returns the entry that already exists;
// its ID is returned by result index so it can be shown too.
func fillFailedEntries[R entryResult](req []*types.Entry, results []R) map[int]string {
	existing := map[int]string{}
	for i, r := range results {
		if r.GetStatus().GetCode() == int32(codes.OK) || i >= len(req) {
			continue
		}
		if codes.Code(r.GetStatus().GetCode()) == codes.AlreadyExists && r.GetEntry().GetId() != "" {
			existing[i] = r.GetEntry().GetId()
		}
		setResultEntry(r, req[i])
	}
	return existing
}

func setResultEntry(r any, e *types.Entry) {
	switch r := r.(type) {
	case *entryv1.BatchCreateEntryResponse_Result:
		r.Entry = e
	case *entryv1.BatchUpdateEntryResponse_Result:
		r.Entry = e
	}
}

// printEntryResults prints per-item results of a batch create or update
// and returns an error if any item failed.
func printEntryResults[R entryResult](out, errOut io.Writer, format outputFormat, verb string, resp proto.Message, results []R, existing map[int]string) error {
	failed := 0
	for _, r := range results {
		if r.GetStatus().GetCode() != int32(codes.OK) {
			failed++
		}
	}
	if format.json() {
		if err := writeProtoJSON(out, resp); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			if r.GetStatus().GetCode() == int32(codes.OK) {
				printEntry(out, r.GetEntry())
			}
		}
		for i, r := range results {
			if st := r.GetStatus(); st.GetCode() != int32(codes.OK) {
				fmt.Fprintf(errOut, "Failed to %s the following entry (%s):\n", verb, statusText(codes.Code(st.GetCode()), st.GetMessage()))
				if id, ok := existing[i]; ok {
					fmt.Fprintf(errOut, "Existing entry   : %s (see `signet entry show --entry-id %s`)\n", id, id)
				}
				printEntry(errOut, r.GetEntry())
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("failed to %s %d of %s (%w)", verb, failed, pluralize(len(results), "entry", "entries"), errBatchFailed)
	}
	return nil
}

// printEntry prints an entry in spire-server's layout.
func printEntry(w io.Writer, e *types.Entry) {
	id := e.GetId()
	if id == "" {
		id = "(none)"
	}
	fmt.Fprintf(w, "Entry ID         : %s\n", id)
	fmt.Fprintf(w, "SPIFFE ID        : %s\n", idString(e.GetSpiffeId()))
	fmt.Fprintf(w, "Parent ID        : %s\n", idString(e.GetParentId()))
	fmt.Fprintf(w, "Revision         : %d\n", e.GetRevisionNumber())
	if e.GetDownstream() {
		fmt.Fprintf(w, "Downstream       : true\n")
	}
	fmt.Fprintf(w, "X509-SVID TTL    : %s\n", ttlText(e.GetX509SvidTtl()))
	fmt.Fprintf(w, "JWT-SVID TTL     : %s\n", ttlText(e.GetJwtSvidTtl()))
	if e.GetExpiresAt() != 0 {
		fmt.Fprintf(w, "Expiration time  : %s\n", time.Unix(e.GetExpiresAt(), 0).UTC())
	}
	for _, s := range e.GetSelectors() {
		fmt.Fprintf(w, "Selector         : %s:%s\n", s.GetType(), s.GetValue())
	}
	for _, td := range e.GetFederatesWith() {
		fmt.Fprintf(w, "FederatesWith    : %s\n", td)
	}
	for _, n := range e.GetDnsNames() {
		fmt.Fprintf(w, "DNS name         : %s\n", n)
	}
	if e.GetAdmin() {
		fmt.Fprintf(w, "Admin            : true\n")
	}
	if e.GetStoreSvid() {
		fmt.Fprintf(w, "StoreSvid        : true\n")
	}
	if e.GetHint() != "" {
		fmt.Fprintf(w, "Hint             : %s\n", e.GetHint())
	}
	fmt.Fprintln(w)
}

func ttlText(secs int32) string {
	if secs == 0 {
		return "default"
	}
	return fmt.Sprint(secs)
}

// idString renders an API SPIFFE ID.
func idString(id *types.SPIFFEID) string {
	if id == nil {
		return ""
	}
	return "spiffe://" + id.GetTrustDomain() + id.GetPath()
}

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

func printDeleteResults(out, errOut io.Writer, format outputFormat, resp *entryv1.BatchDeleteEntryResponse) error {
	failed := 0
	for _, r := range resp.GetResults() {
		if r.GetStatus().GetCode() != int32(codes.OK) {
			failed++
		}
	}
	if format.json() {
		if err := writeProtoJSON(out, resp); err != nil {
			return err
		}
	} else {
		for _, r := range resp.GetResults() {
			if st := r.GetStatus(); st.GetCode() == int32(codes.OK) {
				fmt.Fprintf(out, "Deleted entry with ID: %s\n", r.GetId())
			} else {
				fmt.Fprintf(errOut, "Failed to delete entry with ID %s (%s)\n", r.GetId(), statusText(codes.Code(st.GetCode()), st.GetMessage()))
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("failed to delete %d of %s (%w)", failed, pluralize(len(resp.GetResults()), "entry", "entries"), errBatchFailed)
	}
	return nil
}
