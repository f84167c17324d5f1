package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/privdir"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestDiskRefusesPlantedState: a cache or agent SVID file that another uid
// owns, or that others can read or write, is not loaded (a planted bundle
// would decide which server the agent trusts); saved files are 0600.
func TestDiskRefusesPlantedState(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a file owned by another uid")
	}
	td := spiffeid.RequireTrustDomainFromString("example.org")
	tests := []struct {
		name string
		prep func(t *testing.T, p string)
		want string
	}{
		{"owned by uid 65534", func(t *testing.T, p string) {
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 65534"},
		{"mode 0644", func(t *testing.T, p string) {
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "mode 0644 is looser than 0600"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &diskState{dir: t.TempDir()}
			if err := d.saveCache(persisted{}); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(d.dir, cacheFile)
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("saved cache: %v %v, want 0600", fi, err)
			}
			if _, err := d.loadCache(td); err != nil {
				t.Fatalf("own cache: %v", err)
			}
			tt.prep(t, p)
			if _, err := d.loadCache(td); !errors.Is(err, privdir.ErrUnsafe) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("planted cache loaded: %v", err)
			}
			a := filepath.Join(d.dir, agentSVIDFile)
			if err := os.WriteFile(a, []byte("{}"), 0o600); err != nil {
				t.Fatal(err)
			}
			tt.prep(t, a)
			if _, err := d.loadAgentSVID(); !errors.Is(err, privdir.ErrUnsafe) {
				t.Fatalf("planted agent SVID loaded: %v", err)
			}
		})
	}
}
