package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/signet-id/signet/privdir"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// addWorkloadCommands adds the workload-side commands, which talk to an
// agent's SPIFFE Workload API like any workload would.
func addWorkloadCommands(root *cobra.Command) {
	root.AddCommand(newFetchCommand())
}

func newFetchCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "fetch",
		Short: "Fetch this process's SVIDs and bundles from the agent's Workload API",
		Long: `Fetch asks the Signet agent on this node (or any SPIFFE Workload API, e.g.
spire-agent) for the identities of the calling process.

The socket is --socket-path if given, else $SPIFFE_ENDPOINT_SOCKET, else
` + defaultWorkloadSocket() + `.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	c.AddCommand(newFetchX509Command(), newFetchJWTCommand(), newFetchBundleCommand(), fetchSecretCommand())
	c.SetGlobalNormalizationFunc(spireNormalize)
	c.SetFlagErrorFunc(spireFlagError)
	return c
}

// defaultWorkloadSocket is this user's default agent socket if it exists,
// else the system agent's (root's default), where workloads of every uid
// connect.
func defaultWorkloadSocket() string {
	own := defaults().WorkloadSocket
	if _, err := os.Stat(own); err == nil {
		return own
	}
	return privdir.DefaultLayout(0, os.Getenv).WorkloadSocket
}

// workloadFlags are the flags every fetch command has.
type workloadFlags struct {
	socketPath string
	timeout    time.Duration
	output     outputFormat
}

func (w *workloadFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&w.socketPath, "socket-path", defaultWorkloadSocket(),
		"the Workload API socket: a path or a unix:// URI (default: $SPIFFE_ENDPOINT_SOCKET if set)")
	fs.DurationVar(&w.timeout, "timeout", 5*time.Second, "how long to wait for the agent")
	addOutputFlag(fs, &w.output)
}

// endpoint is where a fetch command connects.
type endpoint struct {
	addr    string // for go-spiffe: unix:///path or tcp://ip:port
	display string // for messages
	path    string // the socket path, if a Unix socket
}

// workloadEndpoint resolves --socket-path, $SPIFFE_ENDPOINT_SOCKET and the
// default, in that order.
func (w *workloadFlags) endpoint(cmd *cobra.Command) (endpoint, error) {
	v := w.socketPath
	source := "--socket-path"
	if !cmd.Flags().Changed("socket-path") {
		if env, ok := workloadapi.GetDefaultAddress(); ok && env != "" {
			v, source = env, "$"+workloadapi.SocketEnv
		}
	}
	if v == "" {
		return endpoint{}, usageErrorf("%s is empty: give the agent's Workload API socket path", source)
	}
	if !strings.Contains(v, ":") {
		abs, err := filepath.Abs(v)
		if err != nil {
			return endpoint{}, fmt.Errorf("cli: socket path %q: %w", v, err)
		}
		return endpoint{addr: "unix://" + abs, display: abs, path: abs}, nil
	}
	if err := workloadapi.ValidateAddress(v); err != nil {
		return endpoint{}, usageErrorf("invalid %s %q: %v (want a path, unix:///path or tcp://ip:port)", source, v, err)
	}
	e := endpoint{addr: v, display: v}
	if u, err := url.Parse(v); err == nil && u.Scheme == "unix" {
		e.path = u.Path
		e.display = u.Path
	}
	return e, nil
}

// workloadClient connects to the Workload API and translates its errors.
type workloadClient struct {
	ep     endpoint
	client *workloadapi.Client
}

func dialWorkload(ctx context.Context, ep endpoint) (*workloadClient, error) {
	if ep.path != "" {
		if err := checkSocket(ep.path); err != nil {
			if rerr := privdir.Reach(ep.path); rerr != nil {
				err = fmt.Errorf("permission denied: %w", rerr)
			}
			return nil, workloadReachError(ep.display, err)
		}
	}
	c, err := workloadapi.New(ctx, workloadapi.WithAddr(ep.addr))
	if err != nil {
		return nil, workloadReachError(ep.display, err)
	}
	return &workloadClient{ep: ep, client: c}, nil
}

func (w *workloadClient) Close() error { return w.client.Close() }

func workloadReachError(where string, cause error) error {
	return fmt.Errorf("cannot reach the Workload API socket at %s: %w (is `signet agent run` running? use --socket-path or $%s)", where, cause, workloadapi.SocketEnv)
}

// err turns a Workload API error into one that says what to do.
func (w *workloadClient) err(what string, timeout time.Duration, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s: the agent did not answer within %s (is it still starting? raise --timeout)", what, timeout)
		}
		return fmt.Errorf("%s: the agent sent a response that is not valid: %w", what, err)
	}
	switch st.Code() {
	case codes.Unavailable:
		msg := st.Message()
		switch {
		case strings.HasPrefix(msg, "agent is not attested yet"):
			return &rpcError{what: what, code: st.Code(), msg: msg, hint: "the agent runs but has no identity yet: see its log; it retries by itself"}
		case strings.Contains(msg, "connection refused"):
			msg = "connection refused"
		case strings.Contains(msg, "permission denied"):
			msg = fmt.Sprintf("permission denied: the socket's mode does not let uid %d connect; the agent creates it 0777 (attestation, not file modes, decides who gets what): check that nothing changed its mode", os.Getuid())
		}
		return workloadReachError(w.ep.display, errors.New(msg))
	case codes.PermissionDenied:
		return &rpcError{what: what, code: st.Code(), msg: st.Message(), hint: fmt.Sprintf(
			"no registration entry matches this process; register it, e.g. `signet entry create --parent-id <agent SPIFFE ID> --spiffe-id <ID> --selector unix:uid:%d`", os.Getuid())}
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: the agent did not answer within %s (is it still starting? raise --timeout)", what, timeout)
	case codes.InvalidArgument:
		return &rpcError{what: what, code: st.Code(), msg: st.Message(), hint: "the request was refused as malformed; check the flags"}
	}
	return &rpcError{what: what, code: st.Code(), msg: st.Message()}
}

// withWorkload wraps a fetch command's run function: it resolves the
// socket, dials it with a timeout, runs fn and closes the connection.
func withWorkload(f *workloadFlags, fn func(ctx context.Context, cmd *cobra.Command, c *workloadClient) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		if f.timeout <= 0 {
			return usageErrorf("--timeout must be positive, e.g. 5s")
		}
		ep, err := f.endpoint(cmd)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
		defer cancel()
		c, err := dialWorkload(ctx, ep)
		if err != nil {
			return err
		}
		defer c.Close()
		return fn(ctx, cmd, c)
	}
}

// pemCerts encodes certs as concatenated PEM CERTIFICATE blocks.
func pemCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// writeFileAtomic writes data to path with perm, replacing any existing
// file (and its permissions) atomically.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
