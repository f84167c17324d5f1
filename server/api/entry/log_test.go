package entry

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// lockedBuffer collects log output written by the service's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// TestAdminChangesAreLoggedAtInfo: entry create, update and delete each
// leave one INFO record in the process log with stable fields (the entry,
// its IDs and who made the change), so an operator sees admin changes
// without the audit log.
func TestAdminChangesAreLoggedAtInfo(t *testing.T) {
	var buf lockedBuffer
	e := newEnv(t, Config{Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	created := e.create(t, e.entry("/web", "/agent", "unix:uid:1000"))[0]
	upd := e.entry("/web", "/agent", "unix:uid:1001")
	upd.Id = created.Id
	if _, err := e.client.BatchUpdateEntry(ctxAs(t, "admin"), &entryv1.BatchUpdateEntryRequest{Entries: []*types.Entry{upd}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.BatchDeleteEntry(ctxAs(t, "admin"), &entryv1.BatchDeleteEntryRequest{Ids: []string{created.Id}}); err != nil {
		t.Fatal(err)
	}
	web, agent := "spiffe://"+e.td.Name()+"/web", "spiffe://"+e.td.Name()+"/agent"
	want := []map[string]any{
		{"level": "INFO", "msg": "entry created", "entry_id": created.Id, "spiffe_id": web, "parent_id": agent, "selectors": 1.0, "caller": "admin_socket"},
		{"level": "INFO", "msg": "entry updated", "entry_id": created.Id, "spiffe_id": web, "parent_id": agent, "caller": "admin_socket"},
		{"level": "INFO", "msg": "entry deleted", "entry_id": created.Id, "caller": "admin_socket"},
	}
	got := buf.records(t)
	if len(got) != len(want) {
		t.Fatalf("%d log records, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		for k, v := range w {
			if got[i][k] != v {
				t.Errorf("record %d: %s = %v, want %v (%v)", i, k, got[i][k], v, got[i])
			}
		}
	}
}
