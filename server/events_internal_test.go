package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/telemetry"
)

// TestCATransitionEvents: every state change between two CA snapshots is
// one ca_transition event with kind, authority_id, from and to.
func TestCATransitionEvents(t *testing.T) {
	exp := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	x := func(id string, st ca.Status, tainted bool) ca.AuthorityInfo {
		return ca.AuthorityInfo{Kind: ca.KindX509, ID: id, Status: st, Tainted: tainted, NotAfter: exp}
	}
	j := func(id string, st ca.Status) ca.AuthorityInfo {
		return ca.AuthorityInfo{Kind: ca.KindJWT, ID: id, Status: st, NotAfter: exp}
	}
	before := authoritySnapshot{
		"x509/a": x("a", ca.StatusActive, false), "x509/b": x("b", ca.StatusPrepared, false),
		"x509/o": x("o", ca.StatusOld, false), "jwt/k": j("k", ca.StatusOld), "jwt/same": j("same", ca.StatusActive),
	}
	after := authoritySnapshot{
		"x509/a": x("a", ca.StatusOld, false), "x509/b": x("b", ca.StatusActive, false),
		"x509/o": x("o", ca.StatusOld, true), "x509/n": x("n", ca.StatusPrepared, false), "jwt/same": j("same", ca.StatusActive),
	}
	var b bytes.Buffer
	securityTransitions(context.Background(), slog.New(slog.NewJSONHandler(&b, nil)), before, after)
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if r[telemetry.FieldEvent] != telemetry.EventCATransition || r["level"] != "INFO" || r["not_after"] != "2027-01-02T03:04:05Z" {
			t.Errorf("record: %v", r)
		}
		got = append(got, strings.Join([]string{r[telemetry.FieldKind].(string), r[telemetry.FieldAuthorityID].(string),
			r[telemetry.FieldFrom].(string), r[telemetry.FieldTo].(string)}, " "))
	}
	// after's keys in order, then the removals
	want := []string{
		"x509 a active old",
		"x509 b prepared active",
		"x509 n none prepared",
		"x509 o old old+tainted",
		"jwt k old removed",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
