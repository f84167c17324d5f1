package workloadapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc/codes"

	"github.com/signet-id/signet/agent/workloadapi"
	"github.com/signet-id/signet/telemetry"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if r[telemetry.FieldCategory] == "security" {
			out = append(out, r)
		}
	}
	return out
}

func denials(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "signet_workload_api_denials_total" {
			for _, m := range mf.GetMetric() {
				out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// TestDenialsCountedAndLogged: a call without the security header, a
// caller with no identity and a caller whose attestation fails are
// counted by reason and logged as authorization_denied security events
// with the caller's uid and pid.
func TestDenialsCountedAndLogged(t *testing.T) {
	logs := &lockedBuffer{}
	withLogs := func(c *workloadapi.Config) { c.Logger = slog.New(slog.NewJSONHandler(logs, nil)) }

	e := startWith(t, withLogs, newEntry("e1", "/someone-else", otherSelector()))
	client := e.rawClient()
	ctx := testContext(t)
	_, err := client.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"a"}})
	wantCode(t, err, codes.InvalidArgument)
	_, err = client.FetchJWTSVID(withHeader(ctx), &workload.JWTSVIDRequest{Audience: []string{"a"}})
	wantCode(t, err, codes.PermissionDenied)
	if got := denials(t, e.reg); got["missing_security_header"] != 1 || got["no_identity"] != 1 || len(got) != 2 {
		t.Errorf("denials: %v", got)
	}

	f := startWith(t, func(c *workloadapi.Config) {
		withLogs(c)
		c.Attestor = failingAttestor{errors.New("cannot read /proc")}
	}, newEntry("e1", "/web", mySelector()))
	_, err = f.rawClient().FetchJWTSVID(withHeader(ctx), &workload.JWTSVIDRequest{Audience: []string{"a"}})
	wantCode(t, err, codes.Internal)
	if got := denials(t, f.reg); got["attestation_failed"] != 1 || len(got) != 1 {
		t.Errorf("denials after a failed attestation: %v", got)
	}

	recs := logs.records(t)
	if len(recs) != 3 {
		t.Fatalf("security events: %d, want 3: %v", len(recs), recs)
	}
	for i, want := range []struct{ denial, code string }{
		{"missing_security_header", "InvalidArgument"}, {"no_identity", "PermissionDenied"}, {"attestation_failed", "Internal"},
	} {
		r := recs[i]
		if r[telemetry.FieldEvent] != telemetry.EventAuthorizationDenied || r[telemetry.FieldDenial] != want.denial ||
			r[telemetry.FieldCode] != want.code || r[telemetry.FieldMethod] != "FetchJWTSVID" {
			t.Errorf("event %d: %v, want denial %s code %s", i, r, want.denial, want.code)
		}
		if r[telemetry.FieldUID] != float64(os.Geteuid()) || r[telemetry.FieldPID] != float64(os.Getpid()) {
			t.Errorf("event %d: uid %v pid %v, want %d %d", i, r[telemetry.FieldUID], r[telemetry.FieldPID], os.Geteuid(), os.Getpid())
		}
	}
}
