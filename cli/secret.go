package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	secretsv1 "github.com/signet-id/signet/proto/signet/secrets/v1"
)

// secretCommand is `signet secret`: administration of secret policies
// (which SPIFFE IDs may read which Vault secrets).
func secretCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "secret",
		Short: "Manage Vault secret policies",
		Long: `A secret policy grants the workloads whose SPIFFE ID matches a pattern a
Vault secret, under a name they ask for with ` + "`signet fetch secret NAME`" + ` (or
the signet.secrets.v1.WorkloadSecrets service on the Workload API socket).`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	policy := &cobra.Command{
		Use:   "policy",
		Short: "Create, list and delete secret policies",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	policy.AddCommand(newSecretPolicyCreateCommand(), newSecretPolicyListCommand(), newSecretPolicyDeleteCommand())
	c.AddCommand(policy)
	c.SetGlobalNormalizationFunc(spireNormalize)
	c.SetFlagErrorFunc(spireFlagError)
	return c
}

func newSecretPolicyCreateCommand() *cobra.Command {
	var (
		af     adminFlags
		p      secretsv1.SecretPolicy
		params []string
	)
	c := &cobra.Command{
		Use:   "create",
		Short: "Grant a Vault secret to the SPIFFE IDs matching a pattern",
		Example: `  signet secret policy create --id db-creds --spiffe-id 'spiffe://example.org/ns/prod/*' \
      --engine kv2 --path secret/prod/db --field password
  signet secret policy create --id vault-token --spiffe-id spiffe://example.org/batch \
      --engine leased --path auth/token/create --param ttl=1h --param policies=batch --field client_token`,
		Args: noArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if p.Id == "" || p.SpiffeIdPattern == "" || p.Path == "" {
				return usageErrorf("--id, --spiffe-id and --path are required")
			}
			switch p.Engine {
			case "kv2", "leased":
			default:
				return usageErrorf("--engine must be kv2 or leased")
			}
			for _, kv := range params {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usageErrorf("--param %q: want KEY=VALUE", kv)
				}
				if p.Params == nil {
					p.Params = map[string]string{}
				}
				p.Params[k] = v
			}
			return nil
		},
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			out, err := secretsv1.NewSecretPoliciesClient(c.conn).CreatePolicy(ctx, &secretsv1.CreatePolicyRequest{Policy: &p})
			if err != nil {
				return c.rpcErr("creating secret policy", err)
			}
			if af.output.json() {
				return writeProtoJSON(cmd.OutOrStdout(), out)
			}
			printSecretPolicies(cmd.OutOrStdout(), []*secretsv1.SecretPolicy{out})
			return nil
		}),
	}
	fs := c.Flags()
	af.register(fs, true)
	fs.StringVar(&p.Id, "id", "", "the secret's name, as workloads ask for it")
	fs.StringVar(&p.SpiffeIdPattern, "spiffe-id", "", "SPIFFE ID or pattern ('*' within a segment, trailing '/**' for any depth)")
	fs.StringVar(&p.Path, "path", "", "Vault path: MOUNT/PATH for kv2, the API path for leased")
	fs.StringVar(&p.Engine, "engine", "kv2", "kv2 or leased")
	fs.StringVar(&p.Field, "field", "", "deliver only this field of the secret")
	fs.StringArrayVar(&params, "param", nil, "KEY=VALUE written to a leased path (repeatable; stored in etcd, so never a secret)")
	return c
}

func newSecretPolicyListCommand() *cobra.Command {
	var af adminFlags
	c := &cobra.Command{
		Use:   "list",
		Short: "List secret policies",
		Args:  noArgs,
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			resp, err := secretsv1.NewSecretPoliciesClient(c.conn).ListPolicies(ctx, &secretsv1.ListPoliciesRequest{})
			if err != nil {
				return c.rpcErr("listing secret policies", err)
			}
			if af.output.json() {
				return writeProtoJSON(cmd.OutOrStdout(), resp)
			}
			if len(resp.Policies) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No secret policies found")
				return nil
			}
			printSecretPolicies(cmd.OutOrStdout(), resp.Policies)
			return nil
		}),
	}
	af.register(c.Flags(), true)
	return c
}

func newSecretPolicyDeleteCommand() *cobra.Command {
	var (
		af adminFlags
		id string
	)
	c := &cobra.Command{
		Use:   "delete",
		Short: "Delete a secret policy: delivery stops and its Vault leases are revoked",
		Args:  noArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if id == "" {
				return usageErrorf("--id is required")
			}
			return nil
		},
		RunE: withAdmin(&af, func(ctx context.Context, cmd *cobra.Command, c *adminClient) error {
			if _, err := secretsv1.NewSecretPoliciesClient(c.conn).DeletePolicy(ctx, &secretsv1.DeletePolicyRequest{Id: id}); err != nil {
				return c.rpcErr("deleting secret policy", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted secret policy %s\n", id)
			return nil
		}),
	}
	af.register(c.Flags(), false)
	c.Flags().StringVar(&id, "id", "", "the policy to delete")
	return c
}

func printSecretPolicies(w io.Writer, ps []*secretsv1.SecretPolicy) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSPIFFE ID\tENGINE\tPATH\tFIELD\tPARAMS")
	for _, p := range ps {
		keys := make([]string, 0, len(p.Params))
		for k := range p.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var kv []string
		for _, k := range keys {
			kv = append(kv, k+"="+p.Params[k])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Id, p.SpiffeIdPattern, p.Engine, p.Path, orDash(p.Field), orDash(strings.Join(kv, ",")))
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fetchSecretCommand is `signet fetch secret NAME`: a workload reads a
// secret from its agent (signet.secrets.v1.WorkloadSecrets on the Workload
// API socket).
func fetchSecretCommand() *cobra.Command {
	var (
		wf       workloadFlags
		spiffeID string
		write    string
		watch    bool
	)
	c := &cobra.Command{
		Use:   "secret NAME",
		Short: "Fetch a Vault secret granted to this process's SPIFFE ID",
		Long: `Fetch secret asks the agent for the secret NAME; the agent attests this
process, and the server releases the secret if a secret policy grants it to
the process's SPIFFE ID. The value is printed to stdout (or written to
--write, mode 0400, atomically replaced). With --watch every new version or
lease is printed (or written) as it arrives.`,
		Example: `  signet fetch secret db-creds
  signet fetch secret db-creds --write /run/app/db.json --watch`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if wf.timeout <= 0 {
				return usageErrorf("--timeout must be positive, e.g. 5s")
			}
			ep, err := wf.endpoint(cmd)
			if err != nil {
				return err
			}
			if ep.path != "" {
				if err := checkSocket(ep.path); err != nil {
					return workloadReachError(ep.display, err)
				}
			}
			target := ep.addr
			if after, ok := strings.CutPrefix(target, "tcp://"); ok {
				target = after
			}
			conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return workloadReachError(ep.display, err)
			}
			defer conn.Close()
			wc := &workloadClient{ep: ep}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
			first := time.AfterFunc(wf.timeout, cancel)
			got := false
			defer first.Stop()
			stream, err := secretsv1.NewWorkloadSecretsClient(conn).Watch(ctx, &secretsv1.WorkloadWatchSecretRequest{Name: args[0], SpiffeId: spiffeID})
			if err != nil {
				return wc.err("fetching secret", wf.timeout, err)
			}
			for {
				s, err := stream.Recv()
				if errors.Is(err, io.EOF) && watch && got {
					return nil // the agent ended the stream (it is shutting down)
				}
				if err != nil {
					if !first.Stop() && errors.Is(ctx.Err(), context.Canceled) && cmd.Context().Err() == nil {
						return fmt.Errorf("fetching secret: the agent sent no value within %s (is Vault reachable from the server? raise --timeout)", wf.timeout)
					}
					if watch && cmd.Context().Err() != nil {
						return nil
					}
					return wc.err("fetching secret", wf.timeout, err)
				}
				first.Stop()
				got = true
				if err := printSecret(cmd, s, wf.output.json(), write); err != nil {
					return err
				}
				if !watch {
					return nil
				}
			}
		},
	}
	fs := c.Flags()
	wf.register(fs)
	fs.StringVar(&spiffeID, "spiffe-id", "", "which of this process's SPIFFE IDs to fetch for (default: the first)")
	fs.StringVar(&write, "write", "", "write the value to this file (mode 0400, replaced atomically) instead of stdout")
	fs.BoolVar(&watch, "watch", false, "keep running and print (or write) every new value")
	return c
}

func printSecret(cmd *cobra.Command, s *secretsv1.Secret, asJSON bool, path string) error {
	if path != "" {
		if err := writeFileAtomic(path, s.Value, 0o400); err != nil {
			return fmt.Errorf("writing secret to %s: %w", path, err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "Wrote secret %s version %d to %s\n", s.Name, s.Version, path)
		return nil
	}
	if asJSON {
		return writeProtoJSON(cmd.OutOrStdout(), s)
	}
	out := cmd.OutOrStdout()
	if _, err := out.Write(s.Value); err != nil {
		return err
	}
	if len(s.Value) > 0 && s.Value[len(s.Value)-1] != '\n' {
		fmt.Fprintln(out)
	}
	return nil
}
