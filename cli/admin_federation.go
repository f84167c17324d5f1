package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// maxRelationshipsData bounds a -data file (the gRPC message limit).
const maxRelationshipsData = 4 << 20

func newFederationCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "federation",
		Short: "Manage federation relationships with other trust domains (create, list, show, update, delete, refresh)",
		Long: `Federation relationships name another trust domain's SPIFFE bundle endpoint;
the server fetches that trust domain's bundle from it at the bundle's refresh
hint. Relationships set in the configuration file's federation block override
these and are not listed here (as in SPIRE).`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	c.AddCommand(
		newFederationWriteCommand("create"),
		newFederationListCommand(),
		newFederationShowCommand(),
		newFederationWriteCommand("update"),
		newFederationDeleteCommand(),
		newFederationRefreshCommand(),
	)
	c.SetGlobalNormalizationFunc(spireNormalize)
	c.SetFlagErrorFunc(spireFlagError)
	return c
}

// relationshipFlags are the fields of one relationship given as flags.
type relationshipFlags struct {
	trustDomain, url, profile, endpointID, bundlePath string
	bundleFormat                                      bundleFormat
	data                                              string
}

func (f *relationshipFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.trustDomain, "trust-domain", "", "the trust domain to federate with, e.g. other.org")
	fs.StringVar(&f.url, "bundle-endpoint-url", "", "the https URL of its SPIFFE bundle endpoint")
	fs.StringVar(&f.profile, "bundle-endpoint-profile", "", "how the endpoint is authenticated: https_web or https_spiffe")
	fs.StringVar(&f.endpointID, "endpoint-spiffe-id", "", "the endpoint's SPIFFE ID (https_spiffe), e.g. spiffe://other.org/spire/server")
	fs.StringVar(&f.bundlePath, "trust-domain-bundle-path", "", "a file with the trust domain's bundle, stored as its federated bundle (optional; https_spiffe needs one to authenticate the endpoint)")
	f.bundleFormat = formatPEM
	fs.Var(&f.bundleFormat, "trust-domain-bundle-format", "the format of --trust-domain-bundle-path: pem or spiffe")
	fs.StringVar(&f.data, "data", "", "a JSON file of relationships ({\"federationRelationships\": [...]}, as spire-server takes it); - reads stdin")
}

func (f *relationshipFlags) empty() bool {
	return f.trustDomain == "" && f.url == "" && f.profile == "" && f.endpointID == "" && f.bundlePath == ""
}

// relationshipJSON is one item of a -data file (spire-server's format).
type relationshipJSON struct {
	TrustDomain             string          `json:"trustDomain"`
	BundleEndpointURL       string          `json:"bundleEndpointURL"`
	BundleEndpointProfile   string          `json:"bundleEndpointProfile"`
	EndpointSPIFFEID        string          `json:"endpointSPIFFEID"`
	TrustDomainBundle       json.RawMessage `json:"trustDomainBundle"`
	TrustDomainBundleFormat string          `json:"trustDomainBundleFormat"`
}

// relationships builds the request's relationships from -data or flags.
func (f *relationshipFlags) relationships(stdin io.Reader) ([]*types.FederationRelationship, error) {
	if f.data == "" {
		var bundle []byte
		if f.bundlePath != "" {
			b, err := os.ReadFile(f.bundlePath)
			if err != nil {
				return nil, usageErrorf("cannot read --trust-domain-bundle-path: %v", err)
			}
			bundle = b
		}
		fr, err := relationshipFrom(relationshipJSON{
			TrustDomain: f.trustDomain, BundleEndpointURL: f.url, BundleEndpointProfile: f.profile, EndpointSPIFFEID: f.endpointID,
		}, bundle, f.bundleFormat)
		if err != nil {
			return nil, usageError{err}
		}
		return []*types.FederationRelationship{fr}, nil
	}
	if !f.empty() {
		return nil, usageErrorf("--data gives every field: drop --trust-domain, --bundle-endpoint-url, --bundle-endpoint-profile, --endpoint-spiffe-id and --trust-domain-bundle-path, or drop --data")
	}
	r := stdin
	if f.data != "-" {
		file, err := os.Open(f.data)
		if err != nil {
			return nil, usageErrorf("cannot read --data: %v", err)
		}
		defer file.Close()
		r = file
	}
	raw, err := io.ReadAll(io.LimitReader(r, maxRelationshipsData+1))
	if err != nil {
		return nil, usageErrorf("cannot read --data: %v", err)
	}
	if len(raw) > maxRelationshipsData {
		return nil, usageErrorf("--data is larger than %d bytes", maxRelationshipsData)
	}
	var doc struct {
		FederationRelationships []relationshipJSON `json:"federationRelationships"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, usageErrorf("--data is not JSON of the form {\"federationRelationships\": [...]}: %v", err)
	}
	if len(doc.FederationRelationships) == 0 {
		return nil, usageErrorf("--data holds no relationships (want {\"federationRelationships\": [{\"trustDomain\": ..., ...}]})")
	}
	var out []*types.FederationRelationship
	for i, j := range doc.FederationRelationships {
		format := formatPEM
		if j.TrustDomainBundleFormat != "" {
			if err := format.Set(j.TrustDomainBundleFormat); err != nil {
				return nil, usageErrorf("--data item %d: %v", i, err)
			}
		}
		var bundle []byte
		if len(j.TrustDomainBundle) > 0 {
			bundle = j.TrustDomainBundle
			if format == formatPEM {
				var s string
				if err := json.Unmarshal(j.TrustDomainBundle, &s); err != nil {
					return nil, usageErrorf("--data item %d: a pem trustDomainBundle is a JSON string: %v", i, err)
				}
				bundle = []byte(s)
			}
		}
		fr, err := relationshipFrom(j, bundle, format)
		if err != nil {
			return nil, usageErrorf("--data item %d: %v", i, err)
		}
		out = append(out, fr)
	}
	return out, nil
}

func relationshipFrom(j relationshipJSON, bundle []byte, format bundleFormat) (*types.FederationRelationship, error) {
	if j.TrustDomain == "" {
		return nil, errors.New("a trust domain is required: --trust-domain other.org")
	}
	td, err := spiffeid.TrustDomainFromString(j.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("invalid trust domain %q: %w", j.TrustDomain, err)
	}
	if j.BundleEndpointURL == "" {
		return nil, errors.New("a bundle endpoint URL is required: --bundle-endpoint-url https://other.org:8443")
	}
	fr := &types.FederationRelationship{TrustDomain: td.Name(), BundleEndpointUrl: j.BundleEndpointURL}
	switch j.BundleEndpointProfile {
	case "https_web":
		if j.EndpointSPIFFEID != "" {
			return nil, errors.New("--endpoint-spiffe-id belongs to the https_spiffe profile")
		}
		fr.BundleEndpointProfile = &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}
	case "https_spiffe":
		if j.EndpointSPIFFEID == "" {
			return nil, errors.New("the https_spiffe profile needs --endpoint-spiffe-id, e.g. spiffe://" + td.Name() + "/spire/server")
		}
		id, err := spiffeid.FromString(j.EndpointSPIFFEID)
		if err != nil {
			return nil, fmt.Errorf("invalid --endpoint-spiffe-id %q: %w", j.EndpointSPIFFEID, err)
		}
		fr.BundleEndpointProfile = &types.FederationRelationship_HttpsSpiffe{HttpsSpiffe: &types.HTTPSSPIFFEProfile{EndpointSpiffeId: id.String()}}
	case "":
		return nil, errors.New("a bundle endpoint profile is required: --bundle-endpoint-profile https_web or https_spiffe")
	default:
		return nil, fmt.Errorf("unknown bundle endpoint profile %q: use https_web or https_spiffe", j.BundleEndpointProfile)
	}
	if bundle != nil {
		b, err := bundleFromData(td, bundle, format)
		if err != nil {
			return nil, fmt.Errorf("trust domain bundle: %w", err)
		}
		fr.TrustDomainBundle = b
	}
	return fr, nil
}

// printRelationship prints fr as spire-server does.
func printRelationship(w io.Writer, fr *types.FederationRelationship) {
	fmt.Fprintf(w, "Trust domain              : %s\n", fr.GetTrustDomain())
	fmt.Fprintf(w, "Bundle endpoint URL       : %s\n", fr.GetBundleEndpointUrl())
	switch p := fr.GetBundleEndpointProfile().(type) {
	case *types.FederationRelationship_HttpsWeb:
		fmt.Fprintf(w, "Bundle endpoint profile   : %s\n", "https_web")
	case *types.FederationRelationship_HttpsSpiffe:
		fmt.Fprintf(w, "Bundle endpoint profile   : %s\n", "https_spiffe")
		fmt.Fprintf(w, "Endpoint SPIFFE ID        : %s\n", p.HttpsSpiffe.GetEndpointSpiffeId())
	}
}

type relationshipResult interface {
	GetStatus() *types.Status
	GetFederationRelationship() *types.FederationRelationship
}

// newFederationWriteCommand is `federation create` or `federation update`.
func newFederationWriteCommand(verb string) *cobra.Command {
	var (
		af  adminFlags
		rf  relationshipFlags
		frs []*types.FederationRelationship
	)
	short := "Create federation relationships"
	if verb == "update" {
		short = "Update federation relationships (every field is replaced)"
	}
	c := &cobra.Command{
		Use:   verb,
		Short: short,
		Example: `  signet federation ` + verb + ` --trust-domain other.org --bundle-endpoint-url https://other.org:8443 \
      --bundle-endpoint-profile https_spiffe --endpoint-spiffe-id spiffe://other.org/spire/server \
      --trust-domain-bundle-path other.pem
  signet federation ` + verb + ` --data relationships.json`,
		Args: noArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) (err error) {
			frs, err = rf.relationships(cmd.InOrStdin())
			return err
		},
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			td := trustdomainv1.NewTrustDomainClient(c.conn)
			var (
				results []relationshipResult
				resp    proto.Message
			)
			if verb == "create" {
				r, err := td.BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{FederationRelationships: frs})
				if err != nil {
					return c.rpcErr("creating federation relationships", err)
				}
				for _, x := range r.GetResults() {
					results = append(results, x)
				}
				resp = r
			} else {
				r, err := td.BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{FederationRelationships: frs})
				if err != nil {
					return c.rpcErr("updating federation relationships", err)
				}
				for _, x := range r.GetResults() {
					results = append(results, x)
				}
				resp = r
			}
			out := cmd.OutOrStdout()
			if af.output.json() {
				if err := writeProtoJSON(out, resp); err != nil {
					return err
				}
			}
			var errs []error
			done := 0
			for i, r := range results {
				if st := r.GetStatus(); st.GetCode() != int32(codes.OK) {
					errs = append(errs, fmt.Errorf("failed to %s the federation relationship with %s: %s", verb, frs[min(i, len(frs)-1)].GetTrustDomain(), statusText(codes.Code(st.GetCode()), st.GetMessage())))
					continue
				}
				done++
				if !af.output.json() {
					fmt.Fprintln(out)
					printRelationship(out, r.GetFederationRelationship())
				}
			}
			if !af.output.json() {
				fmt.Fprintf(out, "\n%s %sd.\n", pluralize(done, "federation relationship", "federation relationships"), verb)
			}
			return errors.Join(errs...)
		}),
	}
	af.register(c.Flags(), true)
	rf.register(c.Flags())
	return c
}

func newFederationListCommand() *cobra.Command {
	var af adminFlags
	c := &cobra.Command{
		Use:   "list",
		Short: "List the federation relationships (those of the TrustDomain API)",
		Args:  noArgs,
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			td := trustdomainv1.NewTrustDomainClient(c.conn)
			resp := &trustdomainv1.ListFederationRelationshipsResponse{}
			token := ""
			for page := 0; ; page++ {
				if page == maxPages {
					return fmt.Errorf("listing federation relationships: the server returned more than %d pages", maxPages)
				}
				r, err := td.ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{PageSize: listPageSize, PageToken: token})
				if err != nil {
					return c.rpcErr("listing federation relationships", err)
				}
				resp.FederationRelationships = append(resp.FederationRelationships, r.GetFederationRelationships()...)
				if token = r.GetNextPageToken(); token == "" {
					break
				}
			}
			out := cmd.OutOrStdout()
			if af.output.json() {
				return writeProtoJSON(out, resp)
			}
			n := len(resp.FederationRelationships)
			if n == 0 {
				fmt.Fprintln(out, "No federation relationships found")
				return nil
			}
			fmt.Fprintf(out, "Found %s\n", pluralize(n, "federation relationship", "federation relationships"))
			for _, fr := range resp.FederationRelationships {
				fmt.Fprintln(out)
				printRelationship(out, fr)
			}
			return nil
		}),
	}
	af.register(c.Flags(), true)
	return c
}

func newFederationShowCommand() *cobra.Command {
	var (
		af adminFlags
		td string
	)
	c := &cobra.Command{
		Use:   "show",
		Short: "Show one federation relationship",
		Args:  noArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if td == "" {
				return usageErrorf("--trust-domain is required: the trust domain of the relationship (see `signet federation list`)")
			}
			t, err := parseTrustDomain("trust-domain", td)
			td = t.Name()
			return err
		},
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			fr, err := trustdomainv1.NewTrustDomainClient(c.conn).GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: td})
			if err != nil {
				return c.rpcErr("fetching the federation relationship with "+td, err)
			}
			out := cmd.OutOrStdout()
			if af.output.json() {
				return writeProtoJSON(out, fr)
			}
			fmt.Fprintf(out, "Found a federation relationship with trust domain %s:\n\n", td)
			printRelationship(out, fr)
			return nil
		}),
	}
	af.register(c.Flags(), true)
	c.Flags().StringVar(&td, "trust-domain", "", "the trust domain of the relationship, e.g. other.org (required)")
	return c
}

// newFederationTDCommand is a command that names one trust domain with
// --id, as spire-server's federation delete and refresh do.
func newFederationTDCommand(use, short, what string, run func(ctx context.Context, td trustdomainv1.TrustDomainClient, name string) error, done string) *cobra.Command {
	var (
		af adminFlags
		id string
	)
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  noArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if id == "" {
				return usageErrorf("--id is required: the trust domain of the relationship (see `signet federation list`)")
			}
			t, err := parseTrustDomain("id", id)
			id = t.Name()
			return err
		},
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			if err := run(ctx, trustdomainv1.NewTrustDomainClient(c.conn), id); err != nil {
				return c.rpcErr(what+" "+id, err)
			}
			if af.output.json() {
				return writeJSON(cmd.OutOrStdout(), map[string]any{})
			}
			fmt.Fprintln(cmd.OutOrStdout(), done)
			return nil
		}),
	}
	af.register(c.Flags(), true)
	c.Flags().StringVar(&id, "id", "", "the trust domain of the relationship, e.g. other.org (required)")
	return c
}

func newFederationDeleteCommand() *cobra.Command {
	return newFederationTDCommand("delete", "Delete a federation relationship (its bundle stays; `signet bundle delete` removes it)",
		"deleting the federation relationship with",
		func(ctx context.Context, td trustdomainv1.TrustDomainClient, name string) error {
			r, err := td.BatchDeleteFederationRelationship(ctx, &trustdomainv1.BatchDeleteFederationRelationshipRequest{TrustDomains: []string{name}})
			if err != nil {
				return err
			}
			for _, x := range r.GetResults() {
				if st := x.GetStatus(); st.GetCode() != int32(codes.OK) {
					return status.Error(codes.Code(st.GetCode()), st.GetMessage())
				}
			}
			return nil
		}, "federation relationship deleted.")
}

func newFederationRefreshCommand() *cobra.Command {
	return newFederationTDCommand("refresh", "Fetch a federated trust domain's bundle from its endpoint now",
		"refreshing the bundle of",
		func(ctx context.Context, td trustdomainv1.TrustDomainClient, name string) error {
			_, err := td.RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: name})
			return err
		}, "Bundle refreshed")
}
