package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	secretsv1 "github.com/signet-id/signet/proto/signet/secrets/v1"
	vsecrets "github.com/signet-id/signet/secrets"
	secretsapi "github.com/signet-id/signet/server/api/secrets"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/store"
)

// runSecretCLI runs the secret commands in a command tree of their own
// (until the root command adds them) and returns stdout, stderr and the
// error.
func runSecretCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := &cobra.Command{Use: "signet", SilenceUsage: true, SilenceErrors: true}
	fetch := &cobra.Command{Use: "fetch"}
	fetch.AddCommand(fetchSecretCommand())
	root.AddCommand(secretCommand(), fetch)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func shortSockDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestSecretPolicyCommands drives create, list and delete against the
// real policy service over a Unix socket, with policies in embedded etcd.
func TestSecretPolicyCommands(t *testing.T) {
	dir := shortSockDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	etcd, err := etcdserver.Start(ctx, etcdserver.Config{Dir: filepath.Join(dir, "etcd")})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	st, err := store.New(etcd.Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	policies, err := vsecrets.NewPolicyStore(etcd.Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	// No Vault is needed to administer policies.
	vc, err := vsecrets.NewClient(vsecrets.ClientConfig{Address: "http://127.0.0.1:1", Auth: vsecrets.TokenAuth{Token: "unused"}})
	if err != nil {
		t.Fatal(err)
	}
	broker, err := vsecrets.NewBroker(vsecrets.BrokerConfig{Client: vc})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	api, err := secretsapi.New(secretsapi.Config{TrustDomain: td, Store: st, Policies: policies, Broker: broker})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	api.Register(g)
	sock := filepath.Join(dir, "admin.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	defer g.Stop()

	out, errOut, err := runSecretCLI(t, "secret", "policy", "create", "--socket-path", sock,
		"--id", "db", "--spiffe-id", "spiffe://example.org/ns/*", "--path", "secret/app/db", "--field", "password")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, errOut)
	}
	mustContain(t, "create output", out, "db", "spiffe://example.org/ns/*", "kv2", "secret/app/db", "password")

	if _, _, err := runSecretCLI(t, "secret", "policy", "create", "--socket-path", sock,
		"--id", "tok", "--spiffe-id", "spiffe://example.org/batch", "--engine", "leased", "--path", "auth/token/create",
		"--param", "ttl=1h", "--param", "policies=batch"); err != nil {
		t.Fatalf("create leased: %v", err)
	}
	if _, _, err := runSecretCLI(t, "secret", "policy", "create", "--socket-path", sock,
		"--id", "db", "--spiffe-id", "spiffe://example.org/x", "--path", "secret/x"); err == nil || !strings.Contains(err.Error(), "AlreadyExists") && !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("duplicate create: %v", err)
	}
	if _, _, err := runSecretCLI(t, "secret", "policy", "create", "--socket-path", sock,
		"--id", "bad", "--spiffe-id", "spiffe://other.org/x", "--path", "secret/x"); err == nil {
		t.Fatal("a policy for another trust domain was accepted")
	}

	out, _, err = runSecretCLI(t, "secret", "policy", "list", "--socket-path", sock)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "list output", out, "db", "tok", "auth/token/create", "policies=batch,ttl=1h")
	out, _, err = runSecretCLI(t, "secret", "policy", "list", "--socket-path", sock, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "list json", out, `"id":"db"`, `"engine":"leased"`)

	if _, _, err := runSecretCLI(t, "secret", "policy", "delete", "--socket-path", sock, "--id", "db"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runSecretCLI(t, "secret", "policy", "delete", "--socket-path", sock, "--id", "db"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("second delete: %v", err)
	}
	out, _, _ = runSecretCLI(t, "secret", "policy", "list", "--socket-path", sock)
	if strings.Contains(out, "secret/app/db") {
		t.Fatalf("deleted policy still listed:\n%s", out)
	}
	if _, _, err := runSecretCLI(t, "secret", "policy", "create", "--socket-path", sock, "--id", "x"); err == nil {
		t.Fatal("create without --spiffe-id and --path succeeded")
	}
}

// workloadSecrets stands in for the agent's WorkloadSecrets service.
type workloadSecrets struct {
	secretsv1.UnimplementedWorkloadSecretsServer
}

func (workloadSecrets) Watch(req *secretsv1.WorkloadWatchSecretRequest, s grpc.ServerStreamingServer[secretsv1.Secret]) error {
	md, _ := metadata.FromIncomingContext(s.Context())
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	if req.Name != "db" {
		return status.Errorf(codes.PermissionDenied, "secret %q is not available", req.Name)
	}
	for i, v := range []string{"pw-1", "pw-2"} {
		if err := s.Send(&secretsv1.Secret{Name: "db", SpiffeId: "spiffe://example.org/web", Value: []byte(v), ContentType: "text/plain", Version: int64(i + 1)}); err != nil {
			return err
		}
	}
	return nil
}

func TestFetchSecret(t *testing.T) {
	dir := shortSockDir(t)
	sock := filepath.Join(dir, "api.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	secretsv1.RegisterWorkloadSecretsServer(g, workloadSecrets{})
	go g.Serve(lis)
	defer g.Stop()

	out, _, err := runSecretCLI(t, "fetch", "secret", "db", "--socket-path", sock)
	if err != nil || out != "pw-1\n" {
		t.Fatalf("fetch secret = %q, %v", out, err)
	}
	out, _, err = runSecretCLI(t, "fetch", "secret", "db", "--socket-path", sock, "--watch")
	if err != nil || out != "pw-1\npw-2\n" {
		t.Fatalf("fetch secret --watch = %q, %v", out, err)
	}
	out, _, err = runSecretCLI(t, "fetch", "secret", "db", "--socket-path", sock, "-o", "json")
	if err != nil || !strings.Contains(out, `"version":"1"`) {
		t.Fatalf("fetch secret -o json = %q, %v", out, err)
	}
	file := filepath.Join(t.TempDir(), "db")
	if _, _, err := runSecretCLI(t, "fetch", "secret", "db", "--socket-path", sock, "--write", file, "--watch"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	fi, serr := os.Stat(file)
	if err != nil || serr != nil || string(b) != "pw-2" || fi.Mode().Perm() != 0o400 {
		t.Fatalf("written file: %q %v %v", b, err, fi.Mode())
	}
	_, _, err = runSecretCLI(t, "fetch", "secret", "other", "--socket-path", sock, "--timeout", (5 * time.Second).String())
	if err == nil || !strings.Contains(err.Error(), "PermissionDenied") && !strings.Contains(err.Error(), "not available") {
		t.Fatalf("denied fetch: %v", err)
	}
}
