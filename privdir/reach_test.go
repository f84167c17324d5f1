package privdir_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/signet-id/signet/privdir"
)

// TestOthersReach: a socket below a 0700 directory is unreachable for
// other users, and the error names that directory; below 0755 ones it is
// reachable.
func TestOthersReach(t *testing.T) {
	base, err := os.MkdirTemp("", "reach")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(base, "public")
	priv := filepath.Join(base, "data", "public")
	if err := os.MkdirAll(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(priv, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(base, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := privdir.OthersReach(filepath.Join(pub, "api.sock")); err != nil {
		t.Fatalf("socket below 0755 directories: %v", err)
	}
	err = privdir.OthersReach(filepath.Join(priv, "api.sock"))
	var re *privdir.ReachError
	if !errors.Is(err, privdir.ErrNotReachable) || !errors.As(err, &re) || re.Dir != filepath.Join(base, "data") || re.Mode.Perm() != 0o700 {
		t.Fatalf("socket below a 0700 directory: %v; want a ReachError naming %s", err, filepath.Join(base, "data"))
	}
}
