package agent_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/server"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// pollInterval is the agent's fallback poll interval in these tests: far
// longer than any wait, so whatever the agent learns it learned by push.
const pollInterval = time.Hour

// deliveryBound bounds every wait for the agent. It is generous (push
// takes milliseconds) and far below pollInterval; it is a safety net, not
// a latency assertion.
const deliveryBound = 30 * time.Second

type env struct {
	srv     *server.Server
	admin   *grpc.ClientConn
	agent   *agent.Agent
	agentID spiffeid.ID
	dataDir string
	reg     *prometheus.Registry
	// logs holds the main agent's text logs.
	logs *logBuffer
	// stop ends the agent (once; cleanup calls it too).
	stop func()
}

// start runs a real server (embedded etcd) and a real agent joined to it
// with a one-hour poll interval, and waits until the agent has synced and
// holds a live push stream.
func start(t testing.TB) *env {
	t.Helper()
	return startWith(t, nil, nil)
}

// startWith is start with the server and agent configurations adjusted by
// srvCfg and agentCfg (either may be nil).
func startWith(t testing.TB, srvCfg func(*server.Config), agentCfg func(*agent.Config)) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "sg") // short: Unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	scfg := server.Config{
		TrustDomain: td,
		DataDir:     filepath.Join(dir, "server"),
		BindAddress: "127.0.0.1:0",
		AdminSocket: filepath.Join(dir, "admin", "api.sock"),
	}
	if srvCfg != nil {
		srvCfg(&scfg)
	}
	srv, err := server.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	sdone := make(chan error, 1)
	go func() { sdone <- srv.Run(sctx) }()
	t.Cleanup(func() { scancel(); <-sdone })
	select {
	case <-srv.Ready():
	case err := <-sdone:
		t.Fatalf("server: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("server did not start within 60s")
	}
	admin, err := grpc.NewClient("unix://"+srv.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	tok, err := agentv1.NewAgentClient(admin).CreateJoinToken(testContext(t), &agentv1.CreateJoinTokenRequest{Ttl: 600})
	if err != nil {
		t.Fatal(err)
	}

	e := &env{
		srv:     srv,
		admin:   admin,
		agentID: spiffeid.RequireFromSegments(td, "spire", "agent", "join_token", tok.Value),
		dataDir: filepath.Join(dir, "agent"),
		reg:     prometheus.NewRegistry(),
		logs:    &logBuffer{},
	}
	acfg := agent.Config{
		TrustDomain:     td,
		ServerAddresses: []string{srv.AgentAddr().String()},
		JoinToken:       tok.Value,
		DataDir:         e.dataDir,
		SocketPath:      filepath.Join(dir, "wl", "api.sock"),
		TrustBundle:     srv.CA().Bundle().X509Authorities(),
		SyncInterval:    pollInterval,
		Registry:        e.reg,
		Logger:          slog.New(slog.NewTextHandler(e.logs, nil)),
	}
	if agentCfg != nil {
		agentCfg(&acfg)
	}
	e.agent, err = agent.New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan error, 1)
	go func() { adone <- e.agent.Run(actx) }()
	e.stop = sync.OnceFunc(func() { acancel(); <-adone })
	t.Cleanup(e.stop)
	// The push stream is open (HELLO received) and the first sync is done:
	// from here on, only a push can make the agent reread its entries
	// within deliveryBound.
	e.waitFor(t, "first sync and an open push stream", func() bool {
		return e.metric(t, "signet_agent_syncs_total", "") >= 1 &&
			e.metric(t, "signet_agent_push_notifications_total", "KIND_HELLO") >= 1
	})
	return e
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), deliveryBound)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(deliveryBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v (the agent polls only every %v)", what, deliveryBound, pollInterval)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metric returns the value of a counter in the agent's registry; with
// kind set, of the series labelled kind=kind. Absent series count 0.
func (e *env) metric(t testing.TB, name, kind string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if kind == "" || hasLabel(m, "kind", kind) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func uidSelector() *types.Selector {
	return &types.Selector{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())}
}

func (e *env) createEntry(t *testing.T, path string) *types.Entry {
	t.Helper()
	resp, err := entryv1.NewEntryClient(e.admin).BatchCreateEntry(testContext(t), &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{{
		SpiffeId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: path},
		ParentId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: e.agentID.Path()},
		Selectors: []*types.Selector{uidSelector()},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if c := codes.Code(resp.Results[0].Status.Code); c != codes.OK {
		t.Fatalf("create entry: %v %s", c, resp.Results[0].Status.Message)
	}
	return resp.Results[0].Entry
}

// waitIdentity waits until the agent's cache serves an SVID for entryID to
// a workload of this uid.
func (e *env) waitIdentity(t *testing.T, entryID string) {
	t.Helper()
	sub := e.agent.Cache().Subscribe([]*types.Selector{uidSelector()})
	defer sub.Close()
	timeout := time.After(deliveryBound)
	for {
		select {
		case u := <-sub.Updates():
			for _, id := range u.Identities {
				if id.Entry.Id == entryID && id.SVID != nil {
					return
				}
			}
		case <-timeout:
			t.Fatalf("entry %s not served within %v; the agent polls only every %v, so the push did not reach it", entryID, deliveryBound, pollInterval)
		}
	}
}

// TestEntryPushReachesAgent proves the push path: the agent polls once an
// hour, so an entry created after its first sync can only reach it within
// the bound through the server's ENTRIES_CHANGED notification.
func TestEntryPushReachesAgent(t *testing.T) {
	e := start(t)
	before := e.metric(t, "signet_agent_push_notifications_total", "KIND_ENTRIES_CHANGED")
	reads := e.metric(t, "signet_agent_entry_reads_total", "")

	for i, path := range []string{"/workload/a", "/workload/b"} {
		entry := e.createEntry(t, path)
		e.waitIdentity(t, entry.Id)
		if got := e.metric(t, "signet_agent_push_notifications_total", "KIND_ENTRIES_CHANGED"); got < before+float64(i+1) {
			t.Fatalf("after %d entries, %v ENTRIES_CHANGED pushes received (had %v)", i+1, got, before)
		}
	}
	if got := e.metric(t, "signet_agent_entry_reads_total", ""); got <= reads {
		t.Fatalf("entry reads %v, had %v: the agent never reread its entries", got, reads)
	}
	if n := e.metric(t, "signet_agent_server_reconnects_total", ""); n != 0 {
		t.Fatalf("%v reconnects: a new session's full read, not the push, may have delivered the entries", n)
	}
}

// TestDataDirFileModes: every file the agent writes (its SVID and key, the
// SVID cache with workload keys) is 0600 in a 0700 directory.
func TestDataDirFileModes(t *testing.T) {
	e := start(t)
	entry := e.createEntry(t, "/workload/files")
	e.waitIdentity(t, entry.Id)
	for _, name := range []string{"agent-svid.json", "svid-cache.json"} {
		path := filepath.Join(e.dataDir, name)
		e.waitFor(t, path, func() bool { _, err := os.Stat(path); return err == nil })
	}

	fi, err := os.Stat(e.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("data dir %s has mode %04o, want 0700", e.dataDir, got)
	}
	n := 0
	err = filepath.WalkDir(e.dataDir, func(path string, d fs.DirEntry, err error) error {
		// The agent keeps writing (a temporary file, then a rename): a
		// file listed but gone by the time it is examined is skipped.
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if got := fi.Mode().Perm(); got&0o077 != 0 {
				t.Errorf("directory %s has mode %04o, want no group or other access", path, got)
			}
		case fi.Mode().IsRegular():
			n++
			if got := fi.Mode().Perm(); got != 0o600 {
				t.Errorf("file %s has mode %04o, want 0600", path, got)
			}
		default:
			if got := fi.Mode().Perm(); got&0o077 != 0 {
				t.Errorf("%s (%v) has mode %04o, want no group or other access", path, fi.Mode().Type(), got)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("found %d files in %s, want at least the agent SVID and the SVID cache", n, e.dataDir)
	}
}
