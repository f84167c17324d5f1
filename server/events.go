package server

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/server/store"
	"github.com/signet-id/signet/telemetry"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// events fans the API services' lifecycle callbacks out to the SVID tracker
// (for forced rotation) and the rotation event log.
type events struct {
	s       *Server
	app     *eventlog.Appender
	tracker *store.SVIDTracker
}

func (e *events) append(ctx context.Context, ev eventlog.Event) {
	if err := e.app.Append(ctx, ev); err != nil {
		e.s.log.Error("failed to record a rotation event", "kind", ev.Kind, "subject", ev.Subject, "error", err)
	}
}

// SVIDIssued implements svid.Events.
func (e *events) SVIDIssued(ctx context.Context, agentID spiffeid.ID, entryID string, id spiffeid.ID, serial, authorityID string, expiresAt time.Time) {
	if e.tracker != nil && !agentID.IsZero() {
		e.tracker.SVIDIssued(ctx, agentID, entryID, id, serial, authorityID, expiresAt)
	}
	if !agentID.IsZero() && entryID != "" {
		e.s.scheduleRenewal(agentID, entryID, e.s.cfg.Clock.Now(), expiresAt)
	}
	actor := "admin"
	if !agentID.IsZero() {
		actor = agentID.String()
	}
	e.append(ctx, eventlog.Event{
		Kind: eventlog.KindSVIDIssued, Subject: id.String(), Actor: actor, Serial: serial, KeyID: authorityID,
		Details: map[string]string{"entry_id": entryID, "expires_at": expiresAt.UTC().Format(time.RFC3339)},
	})
}

// DownstreamCAIssued implements svid.DownstreamEvents: an svid.issued
// event for the downstream CA, marked downstream, the caller as actor.
func (e *events) DownstreamCAIssued(ctx context.Context, callerID spiffeid.ID, entryID, serial, authorityID string, expiresAt time.Time) {
	e.append(ctx, eventlog.Event{
		Kind: eventlog.KindSVIDIssued, Subject: e.s.cfg.TrustDomain.ID().String(), Actor: callerID.String(), Serial: serial, KeyID: authorityID,
		Details: map[string]string{"entry_id": entryID, "downstream": "true", "expires_at": expiresAt.UTC().Format(time.RFC3339)},
	})
}

// AgentEvent implements agent.Events.
func (e *events) AgentEvent(ctx context.Context, kind eventlog.Kind, id spiffeid.ID, serial string) {
	actor := id.String()
	if kind == eventlog.KindAgentEvicted || kind == eventlog.KindAgentBanned {
		actor = "admin"
	}
	e.append(ctx, eventlog.Event{Kind: kind, Subject: id.String(), Actor: actor, Serial: serial})
}

// AuthorityChanged implements localauthority.Events (admin transitions).
// Prepare and activate also show up in the CA state diff that
// logTransitions records, so only taint and revoke are logged here.
func (e *events) AuthorityChanged(ctx context.Context, kind eventlog.Kind, a ca.AuthorityInfo) {
	switch kind {
	case eventlog.KindCAPrepared, eventlog.KindCAActivated, eventlog.KindJWTKeyPrepared, eventlog.KindJWTKeyActivated:
		return
	}
	e.append(ctx, eventlog.Event{Kind: kind, Subject: e.s.cfg.TrustDomain.Name(), Actor: "admin", KeyID: a.ID,
		Details: map[string]string{"not_after": a.NotAfter.UTC().Format(time.RFC3339)}})
}

// authoritySnapshot is what the scheduler-driven lifecycle is diffed
// against to log its transitions.
type authoritySnapshot map[string]ca.AuthorityInfo

func snapshotAuthorities(m *ca.Manager) authoritySnapshot {
	out := authoritySnapshot{}
	for _, a := range m.X509Authorities() {
		out["x509/"+a.ID] = a
	}
	for _, a := range m.JWTAuthorities() {
		out["jwt/"+a.ID] = a
	}
	return out
}

// logTransitions appends ca.* / jwtkey.* events for what changed between
// two snapshots (the automatic lifecycle: prepare and activate).
func (e *events) logTransitions(ctx context.Context, before, after authoritySnapshot) {
	for k, a := range after {
		prepared, activated := eventlog.KindCAPrepared, eventlog.KindCAActivated
		if a.Kind == ca.KindJWT {
			prepared, activated = eventlog.KindJWTKeyPrepared, eventlog.KindJWTKeyActivated
		}
		b, existed := before[k]
		switch {
		case !existed && a.Status == ca.StatusActive:
			e.append(ctx, authorityEvent(e.s, prepared, a))
			e.append(ctx, authorityEvent(e.s, activated, a))
		case !existed:
			e.append(ctx, authorityEvent(e.s, prepared, a))
		case b.Status != ca.StatusActive && a.Status == ca.StatusActive:
			e.append(ctx, authorityEvent(e.s, activated, a))
		}
	}
}

// securityTransitions logs a ca_transition security event for every
// authority whose state changed between two snapshots: created (from
// "none"), prepared to active, active to old, tainted, or removed (to
// "removed", after a revocation or when it aged out).
func securityTransitions(ctx context.Context, log *slog.Logger, before, after authoritySnapshot) {
	state := func(a ca.AuthorityInfo) string {
		if a.Tainted {
			return string(a.Status) + "+tainted"
		}
		return string(a.Status)
	}
	emit := func(a ca.AuthorityInfo, from, to string) {
		kind := "x509"
		if a.Kind == ca.KindJWT {
			kind = "jwt"
		}
		telemetry.SecurityEvent(ctx, log, telemetry.EventCATransition, slog.String(telemetry.FieldKind, kind),
			slog.String(telemetry.FieldAuthorityID, a.ID), slog.String(telemetry.FieldFrom, from), slog.String(telemetry.FieldTo, to),
			slog.Time("not_after", a.NotAfter.UTC()))
	}
	for _, k := range slices.Sorted(maps.Keys(after)) {
		a := after[k]
		if b, ok := before[k]; !ok {
			emit(a, "none", state(a))
		} else if state(b) != state(a) {
			emit(a, state(b), state(a))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if _, ok := after[k]; !ok {
			emit(before[k], state(before[k]), "removed")
		}
	}
}

func authorityEvent(s *Server, kind eventlog.Kind, a ca.AuthorityInfo) eventlog.Event {
	return eventlog.Event{Kind: kind, Subject: s.cfg.TrustDomain.Name(), Actor: "server", KeyID: a.ID,
		Details: map[string]string{"not_after": a.NotAfter.UTC().Format(time.RFC3339)}}
}

// serverSVIDSource offers the server's own X.509-SVID (for checkpoint
// signatures that chain to the trust bundle).
type serverSVIDSource struct{ s *Server }

var _ x509svid.Source = serverSVIDSource{}

func (src serverSVIDSource) GetX509SVID() (*x509svid.SVID, error) {
	c := src.s.serverCert.Load()
	if c == nil {
		return nil, errors.New("server: no server SVID yet")
	}
	chain := make([]*x509.Certificate, 0, len(c.Certificate))
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		chain = append(chain, x)
	}
	id, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return nil, err
	}
	signer, ok := c.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("server: server key cannot sign")
	}
	return &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: signer}, nil
}

// agentSVIDs receives the agents' own SVIDs from the agent API: tracked for
// forced rotation and scheduled for renewal.
type agentSVIDs struct{ s *Server }

func (a agentSVIDs) SVIDIssued(ctx context.Context, agentID spiffeid.ID, entryID string, id spiffeid.ID, serial, authorityID string, expiresAt time.Time) {
	if t := a.s.events.tracker; t != nil {
		t.SVIDIssued(ctx, agentID, entryID, id, serial, authorityID, expiresAt)
	}
	a.s.scheduleRenewal(agentID, "", a.s.cfg.Clock.Now(), expiresAt)
}
