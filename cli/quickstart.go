package cli

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/server"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

func newQuickstartCommand() *cobra.Command {
	var (
		trustDomain string
		keep        bool
		timeout     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Start a server (embedded etcd) and an agent, register you as a workload, fetch your SVIDs, and stop",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			td, err := spiffeid.TrustDomainFromString(trustDomain)
			if err != nil {
				return usageError{fmt.Errorf("invalid --trust-domain %q: %w", trustDomain, err)}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return runQuickstart(ctx, cmd.OutOrStdout(), td, keep)
		},
	}
	cmd.Flags().StringVar(&trustDomain, "trust-domain", "example.org", "trust domain for the demo")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the temporary data directory")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	return cmd
}

func runQuickstart(ctx context.Context, out io.Writer, td spiffeid.TrustDomain, keep bool) error {
	dir, err := os.MkdirTemp("", "signet-qs-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(out, "data directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	step := func(format string, args ...any) { fmt.Fprintf(out, "==> "+format+"\n", args...) }
	logFile, err := os.OpenFile(filepath.Join(dir, "signet.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := newLogger(logFile, "info", "text")

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	step("starting server for trust domain %s on embedded etcd", td.Name())
	srv, err := server.New(server.Config{
		TrustDomain: td,
		DataDir:     filepath.Join(dir, "server"),
		BindAddress: "127.0.0.1:0",
		AdminSocket: filepath.Join(dir, "admin.sock"),
		Logger:      log.With("component", "server"),
	})
	if err != nil {
		return err
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-srvDone:
		return fmt.Errorf("server failed to start: %w (log: %s)", err, logFile.Name())
	case <-ctx.Done():
		return fmt.Errorf("server did not start in time (log: %s)", logFile.Name())
	}
	fmt.Fprintf(out, "    agent listener %s, admin socket %s\n", srv.AgentAddr(), srv.AdminSocket())

	conn, err := grpc.NewClient("unix://"+srv.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	tok, err := agentv1.NewAgentClient(conn).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 600})
	if err != nil {
		return fmt.Errorf("create join token: %w", err)
	}
	agentID := spiffeid.RequireFromSegments(td, "spire", "agent", "join_token", tok.Value)
	step("created join token; the agent will be %s", agentID)

	u, err := user.Current()
	if err != nil {
		return err
	}
	workloadID := spiffeid.RequireFromSegments(td, "user", u.Username)
	resp, err := entryv1.NewEntryClient(conn).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{{
		SpiffeId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: workloadID.Path()},
		ParentId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: agentID.Path()},
		Selectors: []*types.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())}},
	}}})
	if err != nil {
		return fmt.Errorf("create entry: %w", err)
	}
	if st := resp.Results[0].Status; codes.Code(st.Code) != codes.OK {
		return fmt.Errorf("create entry: %s: %s", codes.Code(st.Code), st.Message)
	}
	step("registered %s for selector unix:uid:%d", workloadID, os.Getuid())

	socket := filepath.Join(dir, "workload.sock")
	ag, err := agent.New(agent.Config{
		TrustDomain:     td,
		ServerAddresses: []string{srv.AgentAddr().String()},
		JoinToken:       tok.Value,
		DataDir:         filepath.Join(dir, "agent"),
		SocketPath:      socket,
		TrustBundle:     srv.CA().Bundle().X509Authorities(),
		Logger:          log.With("component", "agent"),
	})
	if err != nil {
		return err
	}
	agDone := make(chan error, 1)
	go func() { agDone <- ag.Run(ctx) }()
	select {
	case <-ag.Ready():
	case err := <-agDone:
		return fmt.Errorf("agent failed to start: %w (log: %s)", err, logFile.Name())
	}
	step("agent started; Workload API at %s", socket)

	client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		return err
	}
	defer client.Close()
	x509ctx, err := fetchX509WithRetry(ctx, client)
	if err != nil {
		return fmt.Errorf("fetch X.509-SVID: %w (log: %s)", err, logFile.Name())
	}
	svid := x509ctx.DefaultSVID()
	step("fetched X.509-SVID over the Workload API")
	fmt.Fprintf(out, "    SPIFFE ID:  %s\n", svid.ID)
	fmt.Fprintf(out, "    expires:    %s (in %s)\n", svid.Certificates[0].NotAfter.Format(time.RFC3339), time.Until(svid.Certificates[0].NotAfter).Round(time.Second))
	bundle, err := x509ctx.Bundles.GetX509BundleForTrustDomain(td)
	if err != nil {
		return err
	}
	if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
		return fmt.Errorf("the SVID does not verify against the bundle: %w", err)
	}
	fmt.Fprintf(out, "    chain:      verifies against the %s bundle (%d authority)\n", td.Name(), len(bundle.X509Authorities()))
	for i, c := range append(svid.Certificates, bundle.X509Authorities()...) {
		role := "leaf"
		if i > 0 {
			role = "root"
		}
		fmt.Fprintf(out, "      [%d] %-4s subject=%q uri=%v not_after=%s\n", i, role, c.Subject.String(), c.URIs, c.NotAfter.Format(time.RFC3339))
	}
	fmt.Fprint(out, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: svid.Certificates[0].Raw})))

	jwt, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "quickstart"})
	if err != nil {
		return fmt.Errorf("fetch JWT-SVID: %w", err)
	}
	jb, err := client.FetchJWTBundles(ctx)
	if err != nil {
		return err
	}
	if _, err := jwtsvid.ParseAndValidate(jwt.Marshal(), jb, []string{"quickstart"}); err != nil {
		return fmt.Errorf("JWT-SVID does not validate: %w", err)
	}
	step("fetched JWT-SVID (audience quickstart), validated against the JWT bundle")
	fmt.Fprintf(out, "    SPIFFE ID:  %s\n    expires:    %s\n", jwt.ID, jwt.Expiry.Format(time.RFC3339))

	step("stopping")
	cancel()
	<-agDone  //nolint:errcheck // both return once cancelled; the quickstart has already succeeded
	<-srvDone //nolint:errcheck // as above
	fmt.Fprintln(out, "done.")
	return nil
}

func fetchX509WithRetry(ctx context.Context, c *workloadapi.Client) (*workloadapi.X509Context, error) {
	var last error
	for {
		x, err := c.FetchX509Context(ctx)
		if err == nil && len(x.SVIDs) > 0 {
			return x, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), last) //nolint:errorlint // last may be nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}
