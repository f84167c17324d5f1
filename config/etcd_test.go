package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/config"
)

func TestEtcdStateSettings(t *testing.T) {
	tests := []struct {
		name, block string
		want        config.EtcdState
		err         string
	}{
		{"defaults", ``, config.EtcdState{}, ""},
		{"sizes", `quota_backend_bytes = "512MiB"
  snapshot_count = 5000`, config.EtcdState{QuotaBackendBytes: 512 << 20, SnapshotCount: 5000}, ""},
		{"bytes", `quota_backend_bytes = 1073741824`, config.EtcdState{QuotaBackendBytes: 1 << 30}, ""},
		{"periodic", `auto_compaction_mode = "periodic"
  auto_compaction_retention = "1h"`, config.EtcdState{CompactionRetention: time.Hour}, ""},
		{"never", `auto_compaction_retention = "0"`, config.EtcdState{CompactionRetention: -1}, ""},
		{"revision", `auto_compaction_mode = "revision"
  auto_compaction_retention = "10000"`, config.EtcdState{CompactionRevisions: 10000}, ""},
		{"bad quota", `quota_backend_bytes = "big"`, config.EtcdState{}, "etcd: quota_backend_bytes: invalid size"},
		{"bad mode", `auto_compaction_mode = "hourly"`, config.EtcdState{}, `etcd: auto_compaction_mode "hourly"`},
		{"bad periodic", `auto_compaction_retention = "10000"`, config.EtcdState{}, "etcd: auto_compaction_retention"},
		{"bad revision", `auto_compaction_mode = "revision"
  auto_compaction_retention = "5m"`, config.EtcdState{}, "etcd: auto_compaction_retention \"5m\": revision mode"},
		{"negative snapshot", `snapshot_count = -1`, config.EtcdState{}, "etcd: snapshot_count -1"},
		{"external snapshot", `endpoints = ["https://127.0.0.1:2379"]
  snapshot_count = 100`, config.EtcdState{}, "snapshot_count is for the embedded member"},
		{"external revision", `endpoints = ["https://127.0.0.1:2379"]
  auto_compaction_mode = "revision"
  auto_compaction_retention = "10"`, config.EtcdState{}, "revision\" is for the embedded member"},
		{"tls without endpoints", `cert_file = "/c.pem"`, config.EtcdState{}, "cert_file, key_file, ca_file and insecure are for an external cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := config.LoadServer(write(t, "server {}\netcd {\n  "+tt.block+"\n}\n"))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Etcd.State()
			if err != nil || got != tt.want {
				t.Fatalf("state %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
