package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/config"
	"github.com/signet-id/signet/server"
	"github.com/spf13/pflag"
)

func TestStateFlags(t *testing.T) {
	for _, tc := range []struct {
		args         []string
		fileInsecure bool
		file         config.EtcdState
		want         server.Config
	}{
		{nil, false, config.EtcdState{}, server.Config{}},
		{nil, true, config.EtcdState{}, server.Config{Etcd: server.EtcdConfig{Insecure: true}}},
		{nil, false, config.EtcdState{QuotaBackendBytes: 1 << 30, CompactionRevisions: 500, SnapshotCount: 2000},
			server.Config{State: server.StateConfig{QuotaBackendBytes: 1 << 30, CompactionRevisions: 500, SnapshotCount: 2000}}},
		// Flags override the file; a retention flag replaces revision mode.
		{[]string{"--etcd-quota-bytes=1048576", "--etcd-compaction-retention=1m"}, false,
			config.EtcdState{QuotaBackendBytes: 1 << 30, CompactionRevisions: 500, SnapshotCount: 2000},
			server.Config{State: server.StateConfig{QuotaBackendBytes: 1 << 20, CompactionRetention: time.Minute, SnapshotCount: 2000}}},
		{[]string{"--etcd-insecure", "--etcd-quota-bytes=1048576", "--etcd-compaction-retention=1m",
			"--event-log-keep-records=-1", "--event-log-keep-age=720h"}, false, config.EtcdState{},
			server.Config{Etcd: server.EtcdConfig{Insecure: true}, State: server.StateConfig{QuotaBackendBytes: 1 << 20,
				CompactionRetention: time.Minute, EventLogKeepRecords: -1, EventLogKeepAge: 720 * time.Hour}}},
	} {
		var f stateFlags
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		f.register(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		var cfg server.Config
		f.apply(&cfg, tc.fileInsecure, tc.file)
		if cfg.Etcd.Insecure != tc.want.Etcd.Insecure || cfg.State != tc.want.State {
			t.Errorf("%v: got %+v %+v", tc.args, cfg.Etcd, cfg.State)
		}
	}
}

func TestEtcdBlockInsecure(t *testing.T) {
	p := filepath.Join(t.TempDir(), "server.hcl")
	hcl := "server {\n  trust_domain = \"example.org\"\n}\netcd {\n  endpoints = [\"http://127.0.0.1:2379\"]\n  insecure = true\n}\n"
	if err := os.WriteFile(p, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	sf, err := config.LoadServer(p)
	if err != nil {
		t.Fatal(err)
	}
	if sf.Etcd == nil || !sf.Etcd.Insecure {
		t.Fatalf("etcd block: %+v", sf.Etcd)
	}
}

// An etcd block without endpoints sizes the embedded member; `server
// validate` names a bad setting.
func TestEtcdBlockEmbeddedSettings(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ block, want string }{
		{"quota_backend_bytes = \"1GiB\"\n  auto_compaction_mode = \"revision\"\n  auto_compaction_retention = \"10000\"\n  snapshot_count = 5000", ""},
		{`auto_compaction_mode = "hourly"`, `etcd: auto_compaction_mode "hourly"`},
		{`quota_backend_bytes = "lots"`, "etcd: quota_backend_bytes: invalid size"},
	} {
		p := filepath.Join(dir, "server.hcl")
		src := "server {\n  trust_domain = \"example.org\"\n  data_dir = \"" + filepath.Join(dir, "data") + "\"\n}\netcd {\n  " + tc.block + "\n}\n"
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := run(t, "server", "validate", "--config", p)
		if tc.want == "" {
			if code != 0 || out != "configuration is valid\n" {
				t.Errorf("%s: exit %d, %q %q", tc.block, code, out, errOut)
			}
			continue
		}
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q lacks %q", tc.block, code, errOut, tc.want)
		}
	}
}
