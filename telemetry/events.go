package telemetry

import (
	"context"
	"log/slog"

	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Security event names: the value of the "event" field (docs/telemetry.md).
const (
	// EventAttestationFailed: a node attestation was refused.
	EventAttestationFailed = "attestation_failed"
	// EventAuthorizationDenied: a caller was refused a method or an
	// identity (server API policy, Workload API with no identity).
	EventAuthorizationDenied = "authorization_denied"
	// EventRateLimited: a per-caller limit refused a connection or call.
	EventRateLimited = "rate_limited"
	// EventCATransition: a CA authority changed state.
	EventCATransition = "ca_transition"
	// EventServerUntrusted: the agent met a server certificate its
	// bundle does not verify (an interception, or a reset server).
	EventServerUntrusted = "server_verification_failed"
)

// Field names of security events. They are stable: a SIEM matches on them.
const (
	FieldEvent       = "event"
	FieldCategory    = "category" // always "security"
	FieldMethod      = "method"   // node attestation method, or full gRPC method
	FieldAgentID     = "agent_id"
	FieldCode        = "code"   // gRPC status code name, e.g. PermissionDenied
	FieldReason      = "reason" // the refusal's message, for people
	FieldDenial      = "denial" // Workload API: no_identity, attestation_failed, rate_limited, missing_security_header
	FieldPeer        = "peer"   // network address of the caller
	FieldUID         = "uid"
	FieldPID         = "pid"
	FieldLimit       = "limit"
	FieldKind        = "kind" // x509 or jwt
	FieldAuthorityID = "authority_id"
	FieldFrom        = "from"
	FieldTo          = "to"
)

// SecurityEvent logs the security event named event (one of the Event
// constants) with attrs at WARN, at INFO for CA transitions, at ERROR for
// an untrusted server. The
// message is "security event: <event>"; event and category=security are
// the first fields. A nil log discards the event.
func SecurityEvent(ctx context.Context, log *slog.Logger, event string, attrs ...slog.Attr) {
	if log == nil {
		return
	}
	level := slog.LevelWarn
	switch event {
	case EventCATransition:
		level = slog.LevelInfo
	case EventServerUntrusted:
		level = slog.LevelError
	}
	all := make([]slog.Attr, 0, len(attrs)+2)
	all = append(all, slog.String(FieldEvent, event), slog.String(FieldCategory, "security"))
	log.LogAttrs(ctx, level, "security event: "+event, append(all, attrs...)...)
}

// Peer is the peer field: the caller's address from the gRPC context
// ("" when unknown).
func Peer(ctx context.Context) slog.Attr {
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	return slog.String(FieldPeer, addr)
}

// Status returns the code and reason fields of a gRPC error.
func Status(err error) []slog.Attr {
	st := status.Convert(err)
	return []slog.Attr{slog.String(FieldCode, st.Code().String()), slog.String(FieldReason, st.Message())}
}
