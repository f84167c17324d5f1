package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// bundleFetchJSON is the documented JSON shape of `signet fetch bundle -o
// json`: each trust domain's SPIFFE bundle document (X.509 and JWT
// authorities, as the Workload API gives them), by trust domain name.
//
//	{"bundles": {"example.org": {"keys": [...]}}}
type bundleFetchJSON struct {
	Bundles map[string]json.RawMessage `json:"bundles"`
}

func newFetchBundleCommand() *cobra.Command {
	var (
		wf     workloadFlags
		format bundleFormat
		tdFlag string
		td     spiffeid.TrustDomain
	)
	c := &cobra.Command{
		Use:   "bundle",
		Short: "Fetch the trust bundles this process may use (its own and federated ones)",
		Long: `Fetch bundle prints the trust bundles from the Workload API: as PEM X.509
authorities (--format pem, the default) or as SPIFFE bundle JSON with X.509 and
JWT authorities (--format spiffe). With several trust domains each is preceded
by a header; --trust-domain picks one.`,
		Example: `  signet fetch bundle > bundle.pem
  signet fetch bundle --format spiffe --trust-domain example.org`,
		Args: noArgs,
		PreRunE: func(*cobra.Command, []string) (err error) {
			if tdFlag != "" {
				td, err = parseTrustDomain("trust-domain", tdFlag)
			}
			return err
		},
		RunE: withWorkload(&wf, func(ctx context.Context, cmd *cobra.Command, c *workloadClient) error {
			x509s, err := c.client.FetchX509Bundles(ctx)
			if err != nil {
				return c.err("fetching X.509 bundles", wf.timeout, err)
			}
			jwts := jwtbundle.NewSet()
			if format == formatSPIFFE || wf.output.json() {
				if jwts, err = c.client.FetchJWTBundles(ctx); err != nil {
					return c.err("fetching JWT bundles", wf.timeout, err)
				}
			}
			bundles := mergeBundles(x509s, jwts)
			if !td.IsZero() {
				bundles = slices.DeleteFunc(bundles, func(b *spiffebundle.Bundle) bool { return b.TrustDomain() != td })
				if len(bundles) == 0 {
					return fmt.Errorf("the Workload API has no bundle for trust domain %s (run without --trust-domain to see which it has)", td)
				}
			}
			return printFetchedBundles(cmd.OutOrStdout(), bundles, format, wf.output)
		}),
	}
	wf.register(c.Flags())
	addFormatFlag(c.Flags(), &format, "how to print bundles")
	c.Flags().StringVar(&tdFlag, "trust-domain", "", "print only the bundle of this trust domain")
	return c
}

// mergeBundles combines X.509 and JWT bundles into SPIFFE bundles, one per
// trust domain, sorted by trust domain.
func mergeBundles(x509s *x509bundle.Set, jwts *jwtbundle.Set) []*spiffebundle.Bundle {
	byTD := map[spiffeid.TrustDomain]*spiffebundle.Bundle{}
	get := func(td spiffeid.TrustDomain) *spiffebundle.Bundle {
		b, ok := byTD[td]
		if !ok {
			b = spiffebundle.New(td)
			byTD[td] = b
		}
		return b
	}
	for _, b := range x509s.Bundles() {
		get(b.TrustDomain()).SetX509Authorities(b.X509Authorities())
	}
	for _, b := range jwts.Bundles() {
		get(b.TrustDomain()).SetJWTAuthorities(b.JWTAuthorities())
	}
	out := make([]*spiffebundle.Bundle, 0, len(byTD))
	for _, b := range byTD {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b *spiffebundle.Bundle) int {
		return cmp.Compare(a.TrustDomain().Name(), b.TrustDomain().Name())
	})
	return out
}

func printFetchedBundles(w io.Writer, bundles []*spiffebundle.Bundle, format bundleFormat, output outputFormat) error {
	if output.json() {
		out := bundleFetchJSON{Bundles: map[string]json.RawMessage{}}
		for _, b := range bundles {
			doc, err := b.Marshal()
			if err != nil {
				return fmt.Errorf("marshaling the bundle of %s: %w", b.TrustDomain(), err)
			}
			out.Bundles[b.TrustDomain().Name()] = doc
		}
		return writeJSON(w, out)
	}
	for i, b := range bundles {
		if len(bundles) > 1 {
			if i > 0 {
				fmt.Fprintln(w)
			}
			bundleHeader(w, b.TrustDomain().Name())
		}
		if format == formatSPIFFE {
			doc, err := bundlecodec.Marshal(b, nil)
			if err != nil {
				return err
			}
			if _, err := w.Write(doc); err != nil {
				return err
			}
			continue
		}
		if _, err := w.Write(pemCerts(b.X509Authorities())); err != nil {
			return err
		}
	}
	return nil
}
