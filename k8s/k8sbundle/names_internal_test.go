package k8sbundle

import (
	"strings"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	for _, tt := range []struct {
		attempt int
		want    time.Duration
	}{{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {8, 2 * time.Minute}, {1000, 2 * time.Minute}} {
		if got := backoff(tt.attempt, time.Second, 2*time.Minute); got != tt.want {
			t.Errorf("backoff(%d) = %v, want %v", tt.attempt, got, tt.want)
		}
	}
}

// TestCheckNames: names the API server refuses are refused here, naming
// the plugin_data setting.
func TestCheckNames(t *testing.T) {
	for _, tt := range []struct{ ns, cm, key, want string }{
		{"spire", "spire-bundle", "bundle.crt", ""},
		{"signet", "signet.bundle", "bundle_1.pem", ""},
		{"", "spire-bundle", "bundle.crt", `namespace ""`},
		{"Spire", "spire-bundle", "bundle.crt", `namespace "Spire"`},
		{"spire", "spire_bundle", "bundle.crt", `config_map "spire_bundle"`},
		{"spire", "spire-bundle", "../x", `config_map_key "../x"`},
		{"spire", "spire-bundle", "a/b", `config_map_key "a/b"`},
	} {
		err := CheckNames(tt.ns, tt.cm, tt.key)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("CheckNames(%q, %q, %q) = %v, want %q", tt.ns, tt.cm, tt.key, err, tt.want)
		}
	}
}
