package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/clock"
	secretsapi "github.com/signet-id/signet/server/api/secrets"
	"github.com/signet-id/signet/server/limits"
	"github.com/signet-id/signet/server/notify"
	"github.com/signet-id/signet/telemetry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// TestAccessRulesMatchServedMethods walks the methods the agent listener's
// and the admin socket's gRPC servers serve (built as Run builds them,
// secrets services included): each has exactly one access rule (a method
// without one is refused to everyone), and every rule names a served
// method (a stale rule for a removed method fails too).
func TestAccessRulesMatchServedMethods(t *testing.T) {
	s := &Server{cfg: Config{Clock: clock.Real()}, events: &events{}, secrets: &secretsapi.API{}}
	s.hub = notify.New(hubState{s}, prometheus.NewRegistry())
	lim := limits.New(s.limitsConfig(), slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	agentSrv, adminSrv := s.grpcServers(lim)
	for name, g := range map[string]*grpc.Server{"agent listener": agentSrv, "admin socket": adminSrv} {
		served := map[string]int{}
		for svc, info := range g.GetServiceInfo() {
			for _, m := range info.Methods {
				served["/"+svc+"/"+m.Name]++
			}
		}
		for m, n := range served {
			if _, ok := policy[m]; !ok || n != 1 {
				t.Errorf("%s: %s served %d times, has access rule: %v", name, m, n, ok)
			}
		}
		for m := range policy {
			if served[m] == 0 {
				t.Errorf("%s: access rule for %s, which is not served", name, m)
			}
		}
	}
}

// TestPolicyPrivilegeSurface pins the methods reachable without admin
// rights: any change to who may call what must change this list too.
func TestPolicyPrivilegeSurface(t *testing.T) {
	want := map[access][]string{
		accessAny: {
			"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/List", "/grpc.health.v1.Health/Watch",
			"/spire.api.server.agent.v1.Agent/AttestAgent",
			"/spire.api.server.bundle.v1.Bundle/GetBundle",
		},
		accessAgent: {
			"/signet.notify.v1.Notifier/Watch",
			"/signet.secrets.v1.Secrets/Watch",
			"/spire.api.server.agent.v1.Agent/PostStatus",
			"/spire.api.server.agent.v1.Agent/RenewAgent",
			"/spire.api.server.entry.v1.Entry/GetAuthorizedEntries",
			"/spire.api.server.entry.v1.Entry/SyncAuthorizedEntries",
			"/spire.api.server.svid.v1.SVID/BatchNewX509SVID",
			"/spire.api.server.svid.v1.SVID/NewJWTSVID",
		},
		accessAgentOrAdmin: {
			"/spire.api.server.bundle.v1.Bundle/GetFederatedBundle",
		},
		// As SPIRE's allow_downstream (docs/key-custody.md).
		accessDownstream: {
			"/spire.api.server.bundle.v1.Bundle/PublishJWTAuthority",
			"/spire.api.server.svid.v1.SVID/NewDownstreamX509CA",
		},
	}
	got := map[access][]string{}
	for m, a := range policy {
		if a != accessAdmin {
			got[a] = append(got[a], m)
		}
	}
	for a := range want {
		slices.Sort(want[a])
		slices.Sort(got[a])
		if !slices.Equal(got[a], want[a]) {
			t.Errorf("access %d: methods %q, want %q", a, got[a], want[a])
		}
	}
	if len(got) != len(want) {
		t.Errorf("access levels %v, want %v", got, want)
	}
}

// TestUnlistedMethodRefused: a service registered on a server that uses
// the policy but absent from it (here gRPC reflection) is refused even to
// a local admin, naming the method, and logs an authorization_denied
// security event.
func TestUnlistedMethodRefused(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewJSONHandler(&logs, nil))}
	g := grpc.NewServer(s.adminInterceptors()...)
	reflection.Register(g)
	healthpb.RegisterHealthServer(g, health.NewServer())
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := net.Listen("unix", filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("unix://"+l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("listed method refused: %v", err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err == nil {
		// Send reports io.EOF if the server already ended the stream; the
		// status comes from Recv.
		_ = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "is not served") {
		t.Fatalf("unlisted method: got %v, want PermissionDenied naming the method", err)
	}
	g.Stop() // no more log writes
	var ev map[string]any
	if err := json.Unmarshal(logs.Bytes(), &ev); err != nil {
		t.Fatalf("want one JSON record: %q", logs.String())
	}
	if ev[telemetry.FieldEvent] != telemetry.EventAuthorizationDenied || ev[telemetry.FieldMethod] != "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo" ||
		ev[telemetry.FieldCode] != "PermissionDenied" || ev[telemetry.FieldPeer] == nil {
		t.Errorf("event: %v", ev)
	}
}
