package cli

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
)

// bundleFormat is the value of --format: pem or spiffe.
type bundleFormat string

const (
	formatPEM    bundleFormat = "pem"
	formatSPIFFE bundleFormat = "spiffe"
)

var _ pflag.Value = (*bundleFormat)(nil)

func (f *bundleFormat) String() string { return string(*f) }
func (f *bundleFormat) Type() string   { return "pem|spiffe" }

func (f *bundleFormat) Set(s string) error {
	switch bundleFormat(strings.ToLower(s)) {
	case formatPEM:
		*f = formatPEM
	case formatSPIFFE:
		*f = formatSPIFFE
	default:
		return fmt.Errorf("unknown bundle format %q: use pem or spiffe", s)
	}
	return nil
}

func addFormatFlag(fs *pflag.FlagSet, f *bundleFormat, what string) {
	*f = formatPEM
	fs.Var(f, "format", what+": pem (X.509 authorities as PEM) or spiffe (SPIFFE bundle JSON with X.509 and JWT authorities)")
}

func newBundleCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "bundle",
		Short: "Show the trust bundle; manage federated bundles (list, set, delete, count)",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	c.AddCommand(
		newBundleShowCommand(),
		newBundleListCommand(),
		newBundleSetCommand(),
		newBundleDeleteCommand(),
		newBundleCountCommand(),
	)
	c.SetGlobalNormalizationFunc(spireNormalize)
	c.SetFlagErrorFunc(spireFlagError)
	return c
}

func newBundleShowCommand() *cobra.Command {
	var (
		af     adminFlags
		format bundleFormat
	)
	c := &cobra.Command{
		Use:   "show",
		Short: "Print the server's own trust bundle",
		Example: `  signet bundle show > bundle.pem
  signet bundle show --format spiffe > example.org.bundle.json`,
		Args: noArgs,
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			b, err := c.bundle.GetBundle(ctx, &bundlev1.GetBundleRequest{})
			if err != nil {
				return c.rpcErr("fetching the trust bundle", err)
			}
			if af.output.json() {
				return writeProtoJSON(cmd.OutOrStdout(), b)
			}
			return printBundle(cmd.OutOrStdout(), cmd.ErrOrStderr(), b, format)
		}),
	}
	af.register(c.Flags(), true)
	addFormatFlag(c.Flags(), &format, "how to print the bundle")
	return c
}

// printBundle prints b as PEM or as a SPIFFE bundle document.
func printBundle(out, warn io.Writer, b *types.Bundle, format bundleFormat) error {
	if format == formatSPIFFE {
		doc, err := spiffeBundleJSON(b, warn)
		if err != nil {
			return err
		}
		_, err = out.Write(doc)
		return err
	}
	for _, a := range b.GetX509Authorities() {
		if err := pem.Encode(out, &pem.Block{Type: "CERTIFICATE", Bytes: a.GetAsn1()}); err != nil {
			return err
		}
	}
	return nil
}

// spiffeBundleJSON renders b as an indented SPIFFE bundle document. JWT
// authorities whose key Go cannot parse (e.g. ML-DSA keys of the pq
// profile) are left out with a warning to warn, since the SPIFFE bundle
// `keys` array cannot carry them for current clients.
func spiffeBundleJSON(b *types.Bundle, warn io.Writer) ([]byte, error) {
	sb, err := bundlecodec.FromProtoSkipping(b, func(kid string, err error) {
		if warn != nil {
			fmt.Fprintf(warn, "Warning: leaving JWT authority %q out of the SPIFFE bundle: %v\n", kid, err)
		}
	})
	if err != nil {
		return nil, err
	}
	return bundlecodec.Marshal(sb, nil)
}

// bundleFromData parses federated bundle data in format for td.
func bundleFromData(td spiffeid.TrustDomain, data []byte, format bundleFormat) (*types.Bundle, error) {
	b := &types.Bundle{TrustDomain: td.Name()}
	if format == formatPEM {
		rest := bytes.TrimSpace(data)
		for len(rest) > 0 {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				return nil, errors.New("bundle data is not PEM: expected CERTIFICATE blocks (use --format spiffe for a SPIFFE bundle JSON document)")
			}
			if block.Type != "CERTIFICATE" {
				return nil, fmt.Errorf("bundle data has a %q PEM block: only CERTIFICATE blocks are allowed", block.Type)
			}
			if _, err := x509.ParseCertificate(block.Bytes); err != nil {
				return nil, fmt.Errorf("bundle data: certificate #%d: %w", len(b.X509Authorities)+1, err)
			}
			b.X509Authorities = append(b.X509Authorities, &types.X509Certificate{Asn1: block.Bytes})
			rest = bytes.TrimSpace(rest)
		}
		if len(b.X509Authorities) == 0 {
			return nil, errors.New("bundle data has no certificates")
		}
		return b, nil
	}
	sb, err := bundlecodec.ParseSPIFFE(td, data)
	if err != nil {
		return nil, fmt.Errorf("bundle data is not a SPIFFE bundle (use --format pem for PEM certificates): %w", err)
	}
	b, err = bundlecodec.ToProto(sb)
	if err != nil {
		return nil, fmt.Errorf("bundle data: %w", err)
	}
	return b, nil
}

// bundleHeader is printed above each bundle when several are listed.
func bundleHeader(w io.Writer, td string) {
	fmt.Fprintf(w, "****************************************\n* %s\n****************************************\n", td)
}

func newBundleListCommand() *cobra.Command {
	var (
		af     adminFlags
		format bundleFormat
		id     string
	)
	c := &cobra.Command{
		Use:   "list",
		Short: "List federated bundles (or show one with --id)",
		Args:  noArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if id != "" {
				td, err := parseTrustDomain("id", id)
				if err != nil {
					return err
				}
				id = td.Name()
			}
			return nil
		},
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			out := cmd.OutOrStdout()
			if id != "" {
				b, err := c.bundle.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: id})
				if err != nil {
					return c.rpcErr(fmt.Sprintf("fetching the federated bundle of %s", id), err)
				}
				if af.output.json() {
					return writeProtoJSON(out, b)
				}
				return printBundle(out, cmd.ErrOrStderr(), b, format)
			}
			resp := &bundlev1.ListFederatedBundlesResponse{}
			token := ""
			for page := 0; ; page++ {
				if page == maxPages {
					return fmt.Errorf("listing federated bundles: the server returned more than %d pages", maxPages)
				}
				r, err := c.bundle.ListFederatedBundles(ctx, &bundlev1.ListFederatedBundlesRequest{PageSize: listPageSize, PageToken: token})
				if err != nil {
					return c.rpcErr("listing federated bundles", err)
				}
				resp.Bundles = append(resp.Bundles, r.GetBundles()...)
				if token = r.GetNextPageToken(); token == "" {
					break
				}
			}
			slices.SortFunc(resp.Bundles, func(a, b *types.Bundle) int { return cmp.Compare(a.GetTrustDomain(), b.GetTrustDomain()) })
			if af.output.json() {
				return writeProtoJSON(out, resp)
			}
			for i, b := range resp.Bundles {
				if i > 0 {
					fmt.Fprintln(out)
				}
				bundleHeader(out, b.GetTrustDomain())
				if err := printBundle(out, cmd.ErrOrStderr(), b, format); err != nil {
					return err
				}
			}
			return nil
		}),
	}
	af.register(c.Flags(), true)
	addFormatFlag(c.Flags(), &format, "how to print bundles")
	c.Flags().StringVar(&id, "id", "", "the trust domain of one federated bundle to show, e.g. other.org")
	return c
}

func newBundleSetCommand() *cobra.Command {
	var (
		af     adminFlags
		format bundleFormat
		id     string
		path   string
		req    *bundlev1.BatchSetFederatedBundleRequest
	)
	c := &cobra.Command{
		Use:   "set",
		Short: "Create or replace a federated bundle",
		Example: `  signet bundle set --id other.org --path other.pem
  curl -s https://other.org/bundle | signet bundle set --id other.org --format spiffe`,
		Args: noArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if id == "" {
				return usageErrorf("--id is required: the trust domain of the bundle, e.g. --id other.org")
			}
			td, err := parseTrustDomain("id", id)
			if err != nil {
				return err
			}
			var data []byte
			if path == "" || path == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(path)
			}
			if err != nil {
				return usageErrorf("cannot read the bundle data: %v (give a readable file with --path, or pipe it on stdin)", err)
			}
			b, err := bundleFromData(td, data, format)
			if err != nil {
				return usageError{err}
			}
			req = &bundlev1.BatchSetFederatedBundleRequest{Bundle: []*types.Bundle{b}}
			return nil
		},
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			resp, err := c.bundle.BatchSetFederatedBundle(ctx, req)
			if err != nil {
				return c.rpcErr("setting the federated bundle", err)
			}
			out := cmd.OutOrStdout()
			if af.output.json() {
				if err := writeProtoJSON(out, resp); err != nil {
					return err
				}
			}
			var errs []error
			for i, r := range resp.GetResults() {
				td := req.Bundle[min(i, len(req.Bundle)-1)].GetTrustDomain()
				if st := r.GetStatus(); st.GetCode() != int32(codes.OK) {
					errs = append(errs, fmt.Errorf("failed to set the federated bundle of %s: %s", td, statusText(codes.Code(st.GetCode()), st.GetMessage())))
				} else if !af.output.json() {
					fmt.Fprintln(out, "bundle set.")
				}
			}
			return errors.Join(errs...)
		}),
	}
	af.register(c.Flags(), true)
	addFormatFlag(c.Flags(), &format, "the format of the bundle data")
	c.Flags().StringVar(&id, "id", "", "the trust domain of the bundle, e.g. other.org (required)")
	c.Flags().StringVar(&path, "path", "", "the file holding the bundle data (default: read stdin)")
	return c
}

func newBundleDeleteCommand() *cobra.Command {
	var (
		af   adminFlags
		ids  []string
		mode string
		req  *bundlev1.BatchDeleteFederatedBundleRequest
	)
	c := &cobra.Command{
		Use:   "delete",
		Short: "Delete federated bundles",
		Long: `Delete removes federated bundles. --mode says what happens to entries that
federate with the trust domain: restrict (default) refuses while any do,
dissociate removes the trust domain from them, delete deletes them.`,
		Args: noArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if len(ids) == 0 {
				return usageErrorf("--id is required: the trust domain of the bundle to delete (see `signet bundle list`)")
			}
			req = &bundlev1.BatchDeleteFederatedBundleRequest{}
			switch mode {
			case "", "restrict":
				req.Mode = bundlev1.BatchDeleteFederatedBundleRequest_RESTRICT
			case "dissociate":
				req.Mode = bundlev1.BatchDeleteFederatedBundleRequest_DISSOCIATE
			case "delete":
				req.Mode = bundlev1.BatchDeleteFederatedBundleRequest_DELETE
			default:
				return usageErrorf("unknown --mode %q: use restrict, dissociate or delete", mode)
			}
			for _, s := range ids {
				td, err := parseTrustDomain("id", s)
				if err != nil {
					return err
				}
				req.TrustDomains = append(req.TrustDomains, td.Name())
			}
			return nil
		},
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			resp, err := c.bundle.BatchDeleteFederatedBundle(ctx, req)
			if err != nil {
				return c.rpcErr("deleting federated bundles", err)
			}
			out := cmd.OutOrStdout()
			if af.output.json() {
				if err := writeProtoJSON(out, resp); err != nil {
					return err
				}
			}
			var errs []error
			for _, r := range resp.GetResults() {
				if st := r.GetStatus(); st.GetCode() != int32(codes.OK) {
					errs = append(errs, fmt.Errorf("failed to delete the federated bundle of %s: %s", r.GetTrustDomain(), statusText(codes.Code(st.GetCode()), st.GetMessage())))
				} else if !af.output.json() {
					fmt.Fprintf(out, "bundle %s deleted.\n", r.GetTrustDomain())
				}
			}
			return errors.Join(errs...)
		}),
	}
	af.register(c.Flags(), true)
	c.Flags().StringArrayVar(&ids, "id", nil, "the trust domain of a federated bundle to delete (repeatable)")
	c.Flags().StringVar(&mode, "mode", "restrict", "what to do with entries federating with it: restrict, dissociate or delete")
	return c
}

func newBundleCountCommand() *cobra.Command {
	var af adminFlags
	c := &cobra.Command{
		Use:   "count",
		Short: "Count bundles (the server's own and federated ones)",
		Args:  noArgs,
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			resp, err := c.bundle.CountBundles(ctx, &bundlev1.CountBundlesRequest{})
			if err != nil {
				return c.rpcErr("counting bundles", err)
			}
			if af.output.json() {
				return writeProtoJSON(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintln(cmd.OutOrStdout(), pluralize(int(resp.GetCount()), "bundle", "bundles"))
			return nil
		}),
	}
	af.register(c.Flags(), true)
	return c
}
