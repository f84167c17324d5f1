package cli

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// x509FetchJSON is the documented JSON shape of `signet fetch x509 -o json`.
// Private keys are never printed; use --write to get them on disk.
//
//	{
//	  "svids": [{
//	    "spiffe_id": "spiffe://example.org/web",
//	    "hint": "",
//	    "not_before": "2026-01-01T00:00:00Z",
//	    "not_after": "2026-01-01T01:00:00Z",
//	    "x509_svid": "-----BEGIN CERTIFICATE-----\n...",   (leaf first, then intermediates)
//	    "bundle": "-----BEGIN CERTIFICATE-----\n..."      (its trust domain's X.509 authorities)
//	  }],
//	  "federated_bundles": {"other.org": "-----BEGIN CERTIFICATE-----\n..."}
//	}
type x509FetchJSON struct {
	SVIDs            []x509SVIDJSON    `json:"svids"`
	FederatedBundles map[string]string `json:"federated_bundles"`
}

type x509SVIDJSON struct {
	SPIFFEID  string `json:"spiffe_id"`
	Hint      string `json:"hint"`
	NotBefore string `json:"not_before"`
	NotAfter  string `json:"not_after"`
	X509SVID  string `json:"x509_svid"`
	Bundle    string `json:"bundle"`
}

func newFetchX509Command() *cobra.Command {
	var (
		wf     workloadFlags
		write  string
		silent bool
	)
	c := &cobra.Command{
		Use:   "x509",
		Short: "Fetch this process's X509-SVIDs and trust bundles",
		Long: `Fetch x509 prints the X509-SVIDs the agent issues to this process: SPIFFE ID,
validity and chain. With --write DIR it writes, like spire-agent api fetch x509,
svid.N.pem (the chain), svid.N.key (PKCS#8, mode 0600), bundle.N.pem and
federated_bundle.N.M.pem for each SVID N.`,
		Example: `  signet fetch x509
  signet fetch x509 --write /run/certs
  signet fetch x509 -o json | jq -r '.svids[0].spiffe_id'`,
		Args: noArgs,
		RunE: withWorkload(&wf, func(ctx context.Context, cmd *cobra.Command, c *workloadClient) error {
			x, err := c.client.FetchX509Context(ctx)
			if err != nil {
				return c.err("fetching X509-SVIDs", wf.timeout, err)
			}
			out := cmd.OutOrStdout()
			if write != "" {
				if err := writeX509(out, write, x, wf.output.json() || silent); err != nil {
					return err
				}
			}
			if wf.output.json() {
				return writeJSON(out, x509ContextJSON(x))
			}
			if !silent {
				printX509Context(out, x)
			}
			return nil
		}),
	}
	wf.register(c.Flags())
	c.Flags().StringVar(&write, "write", "", "a directory to write the SVIDs, keys and bundles to as PEM files")
	c.Flags().BoolVar(&silent, "silent", false, "print nothing on success (with --write)")
	return c
}

// federated returns the bundles of x other than svid's own trust domain,
// sorted by trust domain.
func federated(x *workloadapi.X509Context, own spiffeid.TrustDomain) []*x509bundle.Bundle {
	var out []*x509bundle.Bundle
	for _, b := range x.Bundles.Bundles() {
		if b.TrustDomain() != own {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b *x509bundle.Bundle) int {
		return cmp.Compare(a.TrustDomain().Name(), b.TrustDomain().Name())
	})
	return out
}

func ownBundle(x *workloadapi.X509Context, s *x509svid.SVID) []*x509.Certificate {
	b, ok := x.Bundles.Get(s.ID.TrustDomain())
	if !ok {
		return nil
	}
	return b.X509Authorities()
}

func x509ContextJSON(x *workloadapi.X509Context) x509FetchJSON {
	out := x509FetchJSON{SVIDs: []x509SVIDJSON{}, FederatedBundles: map[string]string{}}
	for _, s := range x.SVIDs {
		leaf := s.Certificates[0]
		out.SVIDs = append(out.SVIDs, x509SVIDJSON{
			SPIFFEID:  s.ID.String(),
			Hint:      s.Hint,
			NotBefore: leaf.NotBefore.UTC().Format(time.RFC3339),
			NotAfter:  leaf.NotAfter.UTC().Format(time.RFC3339),
			X509SVID:  string(pemCerts(s.Certificates)),
			Bundle:    string(pemCerts(ownBundle(x, s))),
		})
	}
	if len(x.SVIDs) > 0 {
		for _, b := range federated(x, x.SVIDs[0].ID.TrustDomain()) {
			out.FederatedBundles[b.TrustDomain().Name()] = string(pemCerts(b.X509Authorities()))
		}
	}
	return out
}

// printX509Context prints the SVIDs like spire-agent api fetch x509, plus
// each certificate of the chain.
func printX509Context(w io.Writer, x *workloadapi.X509Context) {
	fmt.Fprintf(w, "Received %s\n", pluralize(len(x.SVIDs), "svid", "svids"))
	for _, s := range x.SVIDs {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "SPIFFE ID:\t\t%s\n", s.ID)
		if s.Hint != "" {
			fmt.Fprintf(w, "Hint:\t\t\t%s\n", s.Hint)
		}
		leaf := s.Certificates[0]
		fmt.Fprintf(w, "SVID Valid After:\t%v\n", leaf.NotBefore.UTC())
		fmt.Fprintf(w, "SVID Valid Until:\t%v\n", leaf.NotAfter.UTC())
		for i, c := range s.Certificates[1:] {
			fmt.Fprintf(w, "Intermediate #%d Valid After:\t%v\n", i+1, c.NotBefore.UTC())
			fmt.Fprintf(w, "Intermediate #%d Valid Until:\t%v\n", i+1, c.NotAfter.UTC())
		}
		for i, c := range ownBundle(x, s) {
			fmt.Fprintf(w, "CA #%d Valid After:\t%v\n", i+1, c.NotBefore.UTC())
			fmt.Fprintf(w, "CA #%d Valid Until:\t%v\n", i+1, c.NotAfter.UTC())
		}
		for _, b := range federated(x, s.ID.TrustDomain()) {
			for i, c := range b.X509Authorities() {
				fmt.Fprintf(w, "[%s] CA #%d Valid After:\t%v\n", b.TrustDomain().Name(), i+1, c.NotBefore.UTC())
				fmt.Fprintf(w, "[%s] CA #%d Valid Until:\t%v\n", b.TrustDomain().Name(), i+1, c.NotAfter.UTC())
			}
		}
		fmt.Fprintln(w, "Chain:")
		for i, c := range s.Certificates {
			fmt.Fprintf(w, "  #%d subject=%q issuer=%q serial=%s\n", i, c.Subject.String(), c.Issuer.String(), c.SerialNumber.Text(16))
		}
	}
	fmt.Fprintln(w)
}

// writeX509 writes the SVIDs of x into dir as spire-agent does.
func writeX509(w io.Writer, dir string, x *workloadapi.X509Context, quiet bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create --write directory: %w", err)
	}
	say := func(format string, args ...any) {
		if !quiet {
			fmt.Fprintf(w, format, args...)
		}
	}
	for i, s := range x.SVIDs {
		svidPath := filepath.Join(dir, fmt.Sprintf("svid.%d.pem", i))
		keyPath := filepath.Join(dir, fmt.Sprintf("svid.%d.key", i))
		bundlePath := filepath.Join(dir, fmt.Sprintf("bundle.%d.pem", i))

		say("Writing SVID #%d to file %s.\n", i, svidPath)
		if err := writeFileAtomic(svidPath, pemCerts(s.Certificates), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", svidPath, err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(s.PrivateKey)
		if err != nil {
			return fmt.Errorf("encoding the key of SVID #%d: %w", i, err)
		}
		say("Writing key #%d to file %s.\n", i, keyPath)
		if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", keyPath, err)
		}
		say("Writing bundle #%d to file %s.\n", i, bundlePath)
		if err := writeFileAtomic(bundlePath, pemCerts(ownBundle(x, s)), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", bundlePath, err)
		}
		for j, b := range federated(x, s.ID.TrustDomain()) {
			p := filepath.Join(dir, fmt.Sprintf("federated_bundle.%d.%d.pem", i, j))
			say("Writing federated bundle #%d for trust domain %s to file %s.\n", j, b.TrustDomain().Name(), p)
			if err := writeFileAtomic(p, pemCerts(b.X509Authorities()), 0o644); err != nil {
				return fmt.Errorf("writing %s: %w", p, err)
			}
		}
	}
	return nil
}
