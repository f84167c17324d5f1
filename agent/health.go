package agent

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Trailer keys of the agent's health answer: why it is not serving, and
// (when it is) its SPIFFE ID and the expiry of its SVID. spire-agent
// healthcheck ignores them; signet agent healthcheck prints them.
const (
	HealthReasonKey  = "signet-health-reason"
	HealthAgentIDKey = "signet-agent-id"
	HealthExpiryKey  = "signet-agent-svid-expiry"
)

// healthServer is grpc.health.v1 on the Workload API socket, as
// spire-agent serves it (spire-agent healthcheck asks it). The agent is
// SERVING when it holds an unexpired agent SVID and a trust bundle; the
// Workload API answering the call shows it serves.
type healthServer struct {
	healthpb.UnimplementedHealthServer
	a *Agent
}

// Check implements grpc.health.v1; per-service health is refused, as
// spire-agent does.
func (h healthServer) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if req.GetService() != "" {
		return nil, status.Error(codes.InvalidArgument, "per-service health is not supported")
	}
	reason, md := h.a.health()
	if reason != "" {
		md = metadata.Pairs(HealthReasonKey, reason)
	}
	_ = grpc.SetTrailer(ctx, md)
	if reason != "" {
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING}, nil
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// Healthy returns why the agent is unhealthy (not attested yet, its SVID
// expired, no trust bundle), or nil: the check behind the gRPC health
// service and the health_checks ready path.
func (a *Agent) Healthy() error {
	if reason, _ := a.health(); reason != "" {
		return errors.New("agent: " + reason)
	}
	return nil
}

// health returns why the agent is unhealthy, or "" and its identity.
func (a *Agent) health() (string, metadata.MD) {
	a.mu.Lock()
	svid, bundle := a.agentSVID, a.bundle
	a.mu.Unlock()
	now := a.cfg.Clock.Now()
	switch {
	case svid == nil:
		if e := a.notAttested.Load(); e != nil {
			return "not attested to a server yet: " + (*e).Error(), nil
		}
		return "not attested to a server yet (check the agent's logs for the attestation error)", nil
	case !now.Before(svid.Chain[0].NotAfter):
		return "agent SVID expired at " + svid.Chain[0].NotAfter.UTC().Format(time.RFC3339) + " and was not renewed (is the server reachable?)", nil
	case bundle == nil:
		return "no trust bundle yet", nil
	}
	return "", metadata.Pairs(HealthAgentIDKey, a.AgentID().String(),
		HealthExpiryKey, svid.Chain[0].NotAfter.UTC().Format(time.RFC3339))
}
