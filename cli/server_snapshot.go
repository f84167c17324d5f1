package cli

import (
	"fmt"

	"github.com/signet-id/signet/server"
	"github.com/spf13/cobra"
)

// newServerSnapshotCommand is `server snapshot save|restore`: backup and
// restore of the embedded etcd (docs/operations.md).
func newServerSnapshotCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save or restore a snapshot of the server's embedded etcd",
		Long: `A snapshot holds the server's state in etcd: entries, agents, join tokens, bundles, the
event log. The CA key (<data_dir>/ca) and <data_dir>/trust_domain are files beside it: back them up
too (and the --ca-kek-file key, if used). See docs/operations.md.

An external etcd (--etcd-endpoints) is backed up with etcd's own tools (etcdctl snapshot save).`,
	}
	var dataDir string
	save := &cobra.Command{
		Use:     "save FILE",
		Short:   "Write a snapshot of the running server's embedded etcd to FILE (mode 0600)",
		Example: "  signet server snapshot save /backup/signet-$(date +%F).db",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := server.SaveSnapshot(cmd.Context(), dataDir, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Saved snapshot %s: revision %d, %d keys, %d bytes.\n", args[0], info.Revision, info.Keys, info.SizeBytes)
			fmt.Fprintf(cmd.ErrOrStderr(), "Back up %s/ca/ and %s/trust_domain with it: the CA key is not in the snapshot.\n", dataDir, dataDir)
			return nil
		},
	}
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Recreate <data_dir>/etcd from a snapshot (the server must be stopped; <data_dir>/etcd must not exist)",
		Example: "  mv /var/lib/signet/server/etcd /var/lib/signet/server/etcd.broken\n" +
			"  signet server snapshot restore /backup/signet-2026-12-01.db",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := server.RestoreSnapshot(args[0], dataDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Restored %s into %s: revision %d, %d keys.\n", args[0], server.EtcdDir(dataDir), info.Revision, info.Keys)
			fmt.Fprintf(cmd.ErrOrStderr(), "Put %s/ca/ and %s/trust_domain from the same backup in place before `signet server run`.\n", dataDir, dataDir)
			return nil
		},
	}
	for _, c := range []*cobra.Command{save, restore} {
		c.Flags().StringVar(&dataDir, "data-dir", defaults().ServerDataDir, "the server's data directory")
	}
	cmd.AddCommand(save, restore)
	return cmd
}
