package cli

import (
	"os"
	"path/filepath"
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
		want         server.Config
	}{
		{nil, false, server.Config{}},
		{nil, true, server.Config{Etcd: server.EtcdConfig{Insecure: true}}},
		{[]string{"--etcd-insecure", "--etcd-quota-bytes=1048576", "--etcd-compaction-retention=1m",
			"--event-log-keep-records=-1", "--event-log-keep-age=720h"}, false,
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
		f.apply(&cfg, tc.fileInsecure)
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
