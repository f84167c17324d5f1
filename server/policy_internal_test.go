package server

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	auditv1 "github.com/signet-id/signet/proto/signet/audit/v1"
	cav1 "github.com/signet-id/signet/proto/signet/ca/v1"
	notifyv1 "github.com/signet-id/signet/proto/signet/notify/v1"
	secretsv1 "github.com/signet-id/signet/proto/signet/secrets/v1"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// TestPolicyCoversEveryServedMethod: each method of the services the
// server registers has an access rule (a method without one is refused to
// everyone, so a new method would be unusable until it gets one).
func TestPolicyCoversEveryServedMethod(t *testing.T) {
	for _, sd := range []grpc.ServiceDesc{
		agentv1.Agent_ServiceDesc, entryv1.Entry_ServiceDesc, svidv1.SVID_ServiceDesc,
		bundlev1.Bundle_ServiceDesc, localauthorityv1.LocalAuthority_ServiceDesc,
		notifyv1.Notifier_ServiceDesc, cav1.CA_ServiceDesc, auditv1.Audit_ServiceDesc,
		secretsv1.Secrets_ServiceDesc, secretsv1.SecretPolicies_ServiceDesc,
		healthpb.Health_ServiceDesc,
	} {
		var names []string
		for _, m := range sd.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range sd.Streams {
			names = append(names, s.StreamName)
		}
		for _, n := range names {
			if _, ok := policy["/"+sd.ServiceName+"/"+n]; !ok {
				t.Errorf("/%s/%s has no access rule", sd.ServiceName, n)
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
// a local admin, naming the method.
func TestUnlistedMethodRefused(t *testing.T) {
	s := &Server{}
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
}
