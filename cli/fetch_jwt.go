package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// jwtFetchJSON is the documented JSON shape of `signet fetch jwt -o json`:
//
//	{"svids": [{"spiffe_id": "spiffe://example.org/web", "hint": "",
//	            "audience": ["aud1"], "expires_at": "2026-01-01T00:05:00Z",
//	            "token": "eyJ..."}]}
type jwtFetchJSON struct {
	SVIDs []jwtSVIDJSON `json:"svids"`
}

type jwtSVIDJSON struct {
	SPIFFEID  string   `json:"spiffe_id"`
	Hint      string   `json:"hint"`
	Audience  []string `json:"audience"`
	ExpiresAt string   `json:"expires_at"`
	Token     string   `json:"token"`
}

// jwtParams builds the JWT-SVID request from the flags.
func jwtParams(audience []string, spiffeID string) (jwtsvid.Params, error) {
	if len(audience) == 0 {
		return jwtsvid.Params{}, usageErrorf("--audience is required: who the token is for, e.g. --audience spiffe://example.org/db")
	}
	for _, a := range audience {
		if a == "" {
			return jwtsvid.Params{}, usageErrorf("--audience must not be empty")
		}
	}
	p := jwtsvid.Params{Audience: audience[0], ExtraAudiences: slices.Clone(audience[1:])}
	if spiffeID != "" {
		id, err := spiffeid.FromString(spiffeID)
		if err != nil {
			return jwtsvid.Params{}, usageErrorf("invalid --spiffe-id %q: %v (want spiffe://<trust-domain>/<path>)", spiffeID, err)
		}
		p.Subject = id
	}
	return p, nil
}

func newFetchJWTCommand() *cobra.Command {
	var (
		wf       workloadFlags
		audience []string
		spiffeID string
		params   jwtsvid.Params
	)
	c := &cobra.Command{
		Use:   "jwt",
		Short: "Fetch JWT-SVIDs for an audience",
		Example: `  signet fetch jwt --audience spiffe://example.org/db
  TOKEN=$(signet fetch jwt --audience vault -o json | jq -r '.svids[0].token')`,
		Args: noArgs,
		PreRunE: func(*cobra.Command, []string) (err error) {
			params, err = jwtParams(audience, spiffeID)
			return err
		},
		RunE: withWorkload(&wf, func(ctx context.Context, cmd *cobra.Command, c *workloadClient) error {
			svids, err := c.client.FetchJWTSVIDs(ctx, params)
			if err != nil {
				return c.err("fetching JWT-SVIDs", wf.timeout, err)
			}
			out := cmd.OutOrStdout()
			if wf.output.json() {
				return writeJSON(out, jwtSVIDsJSON(svids))
			}
			printJWTSVIDs(out, svids)
			return nil
		}),
	}
	wf.register(c.Flags())
	c.Flags().StringArrayVar(&audience, "audience", nil, "an audience of the token (repeatable; at least one)")
	c.Flags().StringVar(&spiffeID, "spiffe-id", "", "fetch only the SVID with this SPIFFE ID (when the process has several)")
	return c
}

func jwtSVIDsJSON(svids []*jwtsvid.SVID) jwtFetchJSON {
	out := jwtFetchJSON{SVIDs: []jwtSVIDJSON{}}
	for _, s := range svids {
		out.SVIDs = append(out.SVIDs, jwtSVIDJSON{
			SPIFFEID:  s.ID.String(),
			Hint:      s.Hint,
			Audience:  slices.Clone(s.Audience),
			ExpiresAt: s.Expiry.UTC().Format(time.RFC3339),
			Token:     s.Marshal(),
		})
	}
	return out
}

// printJWTSVIDs prints tokens like spire-agent api fetch jwt, with expiry.
func printJWTSVIDs(w io.Writer, svids []*jwtsvid.SVID) {
	for _, s := range svids {
		fmt.Fprintf(w, "token(%s):\n\t%s\n", s.ID, s.Marshal())
		if s.Hint != "" {
			fmt.Fprintf(w, "hint(%s):\n\t%s\n", s.ID, s.Hint)
		}
		fmt.Fprintf(w, "expires(%s):\n\t%s\n", s.ID, s.Expiry.UTC().Format(time.RFC3339))
	}
}
