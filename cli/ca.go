package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	cav1 "github.com/signet-id/signet/proto/signet/ca/v1"
	"github.com/signet-id/signet/rotation/taint"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// caCommand returns `signet ca`: show the CA lifecycle and prepare,
// activate, taint and revoke X.509 authorities and JWT keys (SPIRE's
// LocalAuthority API), with `taint --wait` for forced rotation.
func caCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "ca",
		Short: "Show and manage the CA lifecycle: X.509 authorities and JWT keys (show, prepare, activate, taint, revoke)",
		Long: `The server keeps each kind of authority in a lifecycle, like SPIRE:
prepared (published in the bundle, not yet signing), active (signing), and
old (replaced, still trusted until what it signed expires).

A forced rotation, when a key may be compromised:
  signet ca prepare  --x509                      # a new authority, published
  signet ca activate --x509 --authority-id NEW   # it signs from now on
  signet ca taint    --x509 --authority-id OLD --wait
                     # agents renew every SVID now; waits until none signed by OLD is left
  signet ca revoke   --x509 --authority-id OLD   # OLD leaves the bundle`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	c.AddCommand(
		newCAShowCommand(),
		newCAPrepareCommand(),
		newCAActivateCommand(),
		newCATaintCommand(),
		newCARevokeCommand(),
	)
	c.SetGlobalNormalizationFunc(spireNormalize) // -authorityID as spire-server
	c.SetFlagErrorFunc(spireFlagError)
	return c
}

// caClients returns the LocalAuthority and signet.ca.v1 clients on c.
func caClients(c *adminClient) (localauthorityv1.LocalAuthorityClient, cav1.CAClient) {
	return localauthorityv1.NewLocalAuthorityClient(c.conn), cav1.NewCAClient(c.conn)
}

// kindFlags select X.509 or JWT.
type kindFlags struct {
	x509, jwt bool
}

func (k *kindFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&k.x509, "x509", false, "act on the X.509 authorities (the CA that signs X.509-SVIDs)")
	fs.BoolVar(&k.jwt, "jwt", false, "act on the JWT signing keys")
}

func (k *kindFlags) check(cmd *cobra.Command) error {
	if k.x509 == k.jwt {
		return usageErrorf("give exactly one of --x509 or --jwt (see `%s --help`)", cmd.CommandPath())
	}
	return nil
}

func (k *kindFlags) name() string {
	if k.jwt {
		return "JWT"
	}
	return "X.509"
}

// authorityFlags are the flags of activate, taint and revoke.
type authorityFlags struct {
	admin       adminFlags
	kind        kindFlags
	authorityID string
}

func (f *authorityFlags) register(fs *pflag.FlagSet) {
	f.admin.register(fs, true)
	f.kind.register(fs)
	fs.StringVar(&f.authorityID, "authority-id", "", "the authority `ID` (see 'signet ca show')")
}

func (f *authorityFlags) check(cmd *cobra.Command, _ []string) error {
	if err := f.kind.check(cmd); err != nil {
		return err
	}
	if f.authorityID == "" {
		return usageErrorf("--authority-id is required: the ID of the %s authority (see `signet ca show`)", f.kind.name())
	}
	return nil
}

func newCAShowCommand() *cobra.Command {
	var af adminFlags
	c := &cobra.Command{
		Use:   "show",
		Short: "Show the X.509 authorities and JWT keys: status, authority ID, expiry, taint",
		Args:  noArgs,
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			resp, complete, err := listAuthorities(ctx, c)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if af.output.json() {
				return writeProtoJSON(out, resp)
			}
			printAuthorities(out, "X.509 authorities", resp.X509Authorities)
			fmt.Fprintln(out)
			printAuthorities(out, "JWT authorities", resp.JwtAuthorities)
			if complete {
				fmt.Fprintf(out, "\nBundle sequence number: %d\n", resp.BundleSequence)
			} else {
				fmt.Fprintln(out, "\nThis server does not serve signet.ca.v1: only the active, newest prepared and newest old authorities are shown, without their taint.")
			}
			return nil
		}),
	}
	af.register(c.Flags(), true)
	return c
}

// listAuthorities asks signet.ca.v1, or, on a server without it (SPIRE),
// builds the same answer from the LocalAuthority states (complete=false:
// no taint, at most one old authority).
func listAuthorities(ctx context.Context, c *adminClient) (resp *cav1.ListAuthoritiesResponse, complete bool, err error) {
	la, cas := caClients(c)
	resp, err = cas.ListAuthorities(ctx, &cav1.ListAuthoritiesRequest{})
	if err == nil {
		return resp, true, nil
	}
	if status.Code(err) != codes.Unimplemented {
		return nil, false, c.rpcErr("listing authorities", err)
	}
	x, err := la.GetX509AuthorityState(ctx, &localauthorityv1.GetX509AuthorityStateRequest{})
	if err != nil {
		return nil, false, c.rpcErr("getting the X.509 authority state", err)
	}
	j, err := la.GetJWTAuthorityState(ctx, &localauthorityv1.GetJWTAuthorityStateRequest{})
	if err != nil {
		return nil, false, c.rpcErr("getting the JWT authority state", err)
	}
	from := func(prepared, active, old *localauthorityv1.AuthorityState) []*cav1.Authority {
		var out []*cav1.Authority
		for _, s := range []struct {
			st *localauthorityv1.AuthorityState
			v  cav1.Authority_Status
		}{{prepared, cav1.Authority_STATUS_PREPARED}, {active, cav1.Authority_STATUS_ACTIVE}, {old, cav1.Authority_STATUS_OLD}} {
			if s.st != nil {
				out = append(out, &cav1.Authority{AuthorityId: s.st.AuthorityId, Status: s.v, ExpiresAt: s.st.ExpiresAt})
			}
		}
		return out
	}
	return &cav1.ListAuthoritiesResponse{
		X509Authorities: from(x.Prepared, x.Active, x.Old),
		JwtAuthorities:  from(j.Prepared, j.Active, j.Old),
	}, false, nil
}

func statusName(s cav1.Authority_Status) string {
	switch s {
	case cav1.Authority_STATUS_PREPARED:
		return "prepared"
	case cav1.Authority_STATUS_ACTIVE:
		return "active"
	case cav1.Authority_STATUS_OLD:
		return "old"
	}
	return "unknown"
}

func printAuthorities(w io.Writer, title string, list []*cav1.Authority) {
	if len(list) == 0 {
		fmt.Fprintf(w, "%s: none\n", title)
		return
	}
	fmt.Fprintf(w, "%s:\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STATUS\tAUTHORITY ID\tEXPIRES AT\tTAINTED\tKEY MANAGER\tKEY URI")
	var alt []string
	for _, a := range list {
		tainted := "no"
		if a.Tainted {
			tainted = "yes"
		}
		km, uri := a.KeyManager, a.KeyUri
		if km == "" {
			km, uri = "-", "-" // a server that does not say (SPIRE)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", statusName(a.Status), a.AuthorityId, time.Unix(a.ExpiresAt, 0).UTC().Format(time.RFC3339), tainted, km, uri)
		if a.AltKeyLocation != "" {
			alt = append(alt, fmt.Sprintf("  %s: ML-DSA key in the CA state %s (no key manager here holds ML-DSA keys)", a.AuthorityId, a.AltKeyLocation))
		}
	}
	tw.Flush()
	if len(alt) > 0 {
		fmt.Fprintln(w, "Hybrid ML-DSA alternative keys:")
		for _, l := range alt {
			fmt.Fprintln(w, l)
		}
	}
}

// printState prints an authority state the way spire-server does.
func printState(w io.Writer, heading string, x509 bool, s *localauthorityv1.AuthorityState) {
	fmt.Fprintln(w, heading)
	fmt.Fprintf(w, "  Authority ID: %s\n", s.GetAuthorityId())
	if s.GetExpiresAt() != 0 {
		fmt.Fprintf(w, "  Expires at: %s\n", time.Unix(s.GetExpiresAt(), 0).UTC())
	}
	if !x509 {
		return
	}
	if u := s.GetUpstreamAuthoritySubjectKeyId(); u != "" {
		fmt.Fprintf(w, "  Upstream authority Subject Key ID: %s\n", u)
		return
	}
	fmt.Fprintln(w, "  Upstream authority ID: No upstream authority")
}

func newCAPrepareCommand() *cobra.Command {
	var (
		af   adminFlags
		kind kindFlags
	)
	c := &cobra.Command{
		Use:   "prepare",
		Short: "Prepare a new X.509 authority or JWT key: published in the bundle, not yet signing",
		Args:  noArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return kind.check(cmd)
		},
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			la, _ := caClients(c)
			var (
				resp  proto.Message
				state *localauthorityv1.AuthorityState
			)
			if kind.x509 {
				r, err := la.PrepareX509Authority(ctx, &localauthorityv1.PrepareX509AuthorityRequest{})
				if err != nil {
					return c.rpcErr("preparing an X.509 authority", err)
				}
				resp, state = r, r.PreparedAuthority
			} else {
				r, err := la.PrepareJWTAuthority(ctx, &localauthorityv1.PrepareJWTAuthorityRequest{})
				if err != nil {
					return c.rpcErr("preparing a JWT authority", err)
				}
				resp, state = r, r.PreparedAuthority
			}
			if af.output.json() {
				return writeProtoJSON(cmd.OutOrStdout(), resp)
			}
			printState(cmd.OutOrStdout(), "Prepared "+kind.name()+" authority:", kind.x509, state)
			return nil
		}),
	}
	af.register(c.Flags(), true)
	kind.register(c.Flags())
	return c
}

func newCAActivateCommand() *cobra.Command {
	f := &authorityFlags{}
	c := &cobra.Command{
		Use:     "activate",
		Short:   "Activate the prepared X.509 authority or JWT key: it signs from now on; the active one becomes old",
		Args:    noArgs,
		PreRunE: f.check,
		RunE: withAdmin(&f.admin, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			la, _ := caClients(c)
			var (
				resp  proto.Message
				state *localauthorityv1.AuthorityState
			)
			if f.kind.x509 {
				r, err := la.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: f.authorityID})
				if err != nil {
					return c.rpcErr("activating X.509 authority "+f.authorityID, err)
				}
				resp, state = r, r.ActivatedAuthority
			} else {
				r, err := la.ActivateJWTAuthority(ctx, &localauthorityv1.ActivateJWTAuthorityRequest{AuthorityId: f.authorityID})
				if err != nil {
					return c.rpcErr("activating JWT authority "+f.authorityID, err)
				}
				resp, state = r, r.ActivatedAuthority
			}
			if f.admin.output.json() {
				return writeProtoJSON(cmd.OutOrStdout(), resp)
			}
			printState(cmd.OutOrStdout(), "Activated "+f.kind.name()+" authority:", f.kind.x509, state)
			return nil
		}),
	}
	f.register(c.Flags())
	return c
}

func newCATaintCommand() *cobra.Command {
	f := &authorityFlags{}
	var (
		wait     bool
		timeout  time.Duration
		interval time.Duration
	)
	c := &cobra.Command{
		Use:   "taint",
		Short: "Taint an old X.509 authority or JWT key: agents renew everything it signed now",
		Long: `Taint marks an old authority (one that was active and has been replaced by
activating another) as tainted. The server tells every agent to renew all its
SVIDs at once, so that nothing the tainted authority signed stays in use; the
authority stays in the bundle until it is revoked.

With --wait (X.509 only) the command then waits until no X.509-SVID signed by
the tainted authority is in use any more, and reports how long that took.
Agents that are offline keep theirs until they expire or the agent is evicted.`,
		Args: noArgs,
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(cmd, args); err != nil {
				return err
			}
			if wait && f.kind.jwt {
				return usageErrorf("--wait applies to --x509 only: JWT-SVIDs are not tracked (they expire within their TTL, 5m by default)")
			}
			if timeout <= 0 || interval <= 0 {
				return usageErrorf("--timeout and --interval must be positive, e.g. 15m and 500ms")
			}
			return nil
		},
		RunE: withAdmin(&f.admin, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			la, cas := caClients(c)
			out := cmd.OutOrStdout()
			if f.kind.jwt {
				r, err := la.TaintJWTAuthority(ctx, &localauthorityv1.TaintJWTAuthorityRequest{AuthorityId: f.authorityID})
				if err != nil {
					return c.rpcErr("tainting JWT authority "+f.authorityID, err)
				}
				if f.admin.output.json() {
					return writeProtoJSON(out, r)
				}
				printState(out, "Tainted JWT authority:", false, r.TaintedAuthority)
				return nil
			}
			count := func(ctx context.Context) (int, error) {
				r, err := cas.CountSVIDsByAuthority(ctx, &cav1.CountSVIDsByAuthorityRequest{AuthorityId: f.authorityID})
				if err != nil {
					return 0, err
				}
				return int(r.Count), nil
			}
			before := 0
			if wait {
				n, err := count(ctx)
				if status.Code(err) == codes.Unimplemented {
					return fmt.Errorf("--wait needs a Signet server that tracks issued SVIDs; this one does not (%s)", status.Convert(err).Message())
				}
				if err != nil {
					return c.rpcErr("counting SVIDs signed by "+f.authorityID, err)
				}
				before = n
			}
			start := time.Now()
			r, err := la.TaintX509Authority(ctx, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: f.authorityID})
			already := wait && status.Code(err) == codes.Internal && strings.Contains(status.Convert(err).Message(), "already tainted")
			if err != nil && !already {
				return c.rpcErr("tainting X.509 authority "+f.authorityID, err)
			}
			if !wait {
				if f.admin.output.json() {
					return writeProtoJSON(out, r)
				}
				printState(out, "Tainted X.509 authority:", true, r.TaintedAuthority)
				fmt.Fprintln(out, "Agents were told to renew their SVIDs now. Revoke the authority once they have (`signet ca revoke`).")
				return nil
			}
			if !f.admin.output.json() {
				if already {
					fmt.Fprintf(out, "X.509 authority %s was already tainted; waiting from now.\n", f.authorityID)
				} else {
					printState(out, "Tainted X.509 authority:", true, r.TaintedAuthority)
				}
				fmt.Fprintf(out, "Waiting for agents to replace the SVIDs signed by %s...\n", f.authorityID)
			}
			res, werr := taint.Wait(ctx, count, taint.Options{
				Interval: interval, Timeout: timeout, Start: start, Initial: before,
				OnProgress: func(p taint.Progress) {
					if !f.admin.output.json() && p.Remaining > 0 {
						fmt.Fprintf(cmd.ErrOrStderr(), "  %s left of %d (%s)\n", pluralize(p.Remaining, "SVID", "SVIDs"), p.Initial, p.Elapsed.Round(time.Millisecond))
					}
				},
			})
			if werr != nil {
				var nr *taint.NotReplacedError
				if !errors.As(werr, &nr) {
					return werr
				}
				var cause error
				switch {
				case errors.Is(nr.Err, context.DeadlineExceeded) || status.Code(nr.Err) == codes.DeadlineExceeded:
					// The last count may end with the RPC's own deadline.
					cause = fmt.Errorf("timed out (--timeout %s)", timeout)
				case errors.Is(nr.Err, context.Canceled):
					cause = errors.New("interrupted")
				default:
					cause = c.rpcErr("counting SVIDs", nr.Err)
				}
				return fmt.Errorf("%d of %d SVIDs signed by %s not replaced after %s: %w (agents that are offline keep theirs until they expire or are evicted; see `signet agent list`)",
					nr.Remaining, nr.Initial, f.authorityID, nr.Elapsed.Round(time.Millisecond), cause)
			}
			if f.admin.output.json() {
				v := map[string]any{
					"authority_id":    f.authorityID,
					"replaced_svids":  res.Replaced,
					"elapsed":         res.Elapsed.Round(time.Millisecond).String(),
					"elapsed_seconds": res.Elapsed.Seconds(),
				}
				if r != nil {
					v["tainted_authority"] = protoValue(r.TaintedAuthority)
				}
				return writeJSON(out, v)
			}
			fmt.Fprintf(out, "All %s signed by %s replaced in %s.\n", pluralize(res.Replaced, "SVID", "SVIDs"), f.authorityID, res.Elapsed.Round(time.Millisecond))
			return nil
		}),
	}
	f.register(c.Flags())
	c.Flags().BoolVar(&wait, "wait", false, "wait until no X.509-SVID signed by the authority is in use, and report how long it took")
	c.Flags().DurationVar(&timeout, "timeout", taint.DefaultTimeout, "with --wait: give up after this long (exit code 1)")
	c.Flags().DurationVar(&interval, "interval", taint.DefaultInterval, "with --wait: how often to ask the server")
	return c
}

func newCARevokeCommand() *cobra.Command {
	f := &authorityFlags{}
	var force bool
	c := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a tainted X.509 authority or JWT key: it leaves the bundle and what it signed stops verifying",
		Long: `Revoke removes a tainted authority from the trust bundle. For an X.509
authority the command first asks how many SVIDs it signed are still in use and
refuses while there are any, unless --force is given.`,
		Args:    noArgs,
		PreRunE: f.check,
		RunE: withAdmin(&f.admin, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			la, cas := caClients(c)
			out := cmd.OutOrStdout()
			if f.kind.jwt {
				r, err := la.RevokeJWTAuthority(ctx, &localauthorityv1.RevokeJWTAuthorityRequest{AuthorityId: f.authorityID})
				if err != nil {
					return c.rpcErr("revoking JWT authority "+f.authorityID, err)
				}
				if f.admin.output.json() {
					return writeProtoJSON(out, r)
				}
				printState(out, "Revoked JWT authority:", false, r.RevokedAuthority)
				return nil
			}
			if !force {
				r, err := cas.CountSVIDsByAuthority(ctx, &cav1.CountSVIDsByAuthorityRequest{AuthorityId: f.authorityID})
				switch {
				case status.Code(err) == codes.Unimplemented: // not tracked (SPIRE): nothing to check
				case err != nil:
					return c.rpcErr("counting SVIDs signed by "+f.authorityID, err)
				case r.Count > 0:
					return fmt.Errorf("refusing to revoke X.509 authority %s: %s it signed still in use; `signet ca taint --x509 --authority-id %s --wait` waits until agents have replaced them, --force revokes anyway (those SVIDs then stop verifying)",
						f.authorityID, pluralize(int(r.Count), "SVID", "SVIDs"), f.authorityID)
				}
			}
			r, err := la.RevokeX509Authority(ctx, &localauthorityv1.RevokeX509AuthorityRequest{AuthorityId: f.authorityID})
			if err != nil {
				return c.rpcErr("revoking X.509 authority "+f.authorityID, err)
			}
			if f.admin.output.json() {
				return writeProtoJSON(out, r)
			}
			printState(out, "Revoked X.509 authority:", true, r.RevokedAuthority)
			return nil
		}),
	}
	f.register(c.Flags())
	c.Flags().BoolVar(&force, "force", false, "revoke an X.509 authority even while SVIDs it signed are in use")
	return c
}

// protoValue turns m into a JSON value in the same form as writeProtoJSON.
func protoValue(m proto.Message) any {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return nil
	}
	var v any
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	return dropNulls(v)
}
