package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/signet-id/signet/privdir"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// adminFlags are the flags every admin command has.
type adminFlags struct {
	socketPath string
	dataDir    string
	output     outputFormat
}

func (a *adminFlags) register(fs *pflag.FlagSet, withOutput bool) {
	fs.StringVar(&a.socketPath, "socket-path", "", "path to the Signet (or SPIRE) server admin API Unix socket (default <data-dir>/private/api.sock)")
	fs.StringVar(&a.dataDir, "data-dir", defaults().ServerDataDir, "the server's data directory, where the admin socket is by default")
	if withOutput {
		addOutputFlag(fs, &a.output)
	}
}

// adminClient is a connection to a server's admin socket and the API
// clients on it.
type adminClient struct {
	socket string
	conn   *grpc.ClientConn

	entry  entryv1.EntryClient
	agent  agentv1.AgentClient
	bundle bundlev1.BundleClient
	health healthpb.HealthClient
}

// socket returns --socket-path, or the admin socket in --data-dir.
func (a *adminFlags) socket() string {
	if a.socketPath != "" {
		return a.socketPath
	}
	return privdir.AdminSocket(a.dataDir)
}

// dialAdmin connects to the admin socket at path. It checks the socket
// exists first so that the error says so plainly.
func dialAdmin(path string) (*adminClient, error) {
	if path == "" {
		return nil, usageError{errors.New("--socket-path is empty: give the path of the server admin socket")}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("cli: admin socket path %q: %w", path, err)
	}
	if err := checkSocket(abs); err != nil {
		return nil, adminReachError(abs, err)
	}
	conn, err := grpc.NewClient("unix://"+abs, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, adminReachError(abs, err)
	}
	return &adminClient{
		socket: abs,
		conn:   conn,
		entry:  entryv1.NewEntryClient(conn),
		agent:  agentv1.NewAgentClient(conn),
		bundle: bundlev1.NewBundleClient(conn),
		health: healthpb.NewHealthClient(conn),
	}, nil
}

func (c *adminClient) Close() error { return c.conn.Close() }

// checkSocket reports whether path is an existing Unix socket.
func checkSocket(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("no such file")
	case errors.Is(err, fs.ErrPermission):
		return errors.New("permission denied (run as the user that owns the socket)")
	case err != nil:
		return err
	case fi.Mode()&os.ModeSocket == 0:
		return errors.New("not a Unix socket")
	}
	return nil
}

func adminReachError(path string, cause error) error {
	return fmt.Errorf("cannot reach the Signet server admin socket at %s: %w (is `signet server run` running? use --socket-path)", path, cause)
}

// rpcErr turns an error from an admin RPC into one that says what was
// being done, the gRPC code and message, and what to do about it.
func (c *adminClient) rpcErr(what string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	if st.Code() == codes.Unavailable {
		msg := st.Message()
		switch {
		case strings.Contains(msg, "connection refused"):
			msg = "connection refused"
		case strings.Contains(msg, "no such file"):
			msg = "no such file"
		}
		return adminReachError(c.socket, errors.New(msg))
	}
	if st.Code() == codes.Canceled && errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: interrupted", what)
	}
	return &rpcError{what: what, code: st.Code(), msg: st.Message(), hint: hintForCode(st.Code())}
}

// withAdmin wraps an admin command's run function: it dials the socket in
// f, runs fn, and closes the connection.
func withAdmin(f *adminFlags, fn func(ctx context.Context, cmd *cobra.Command, c *adminClient) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		c, err := dialAdmin(f.socket())
		if err != nil {
			return err
		}
		defer c.Close()
		return fn(cmd.Context(), cmd, c)
	}
}
