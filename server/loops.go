package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/issuer"
	"github.com/signet-id/signet/pq/mldsa"
	notifyv1 "github.com/signet-id/signet/proto/signet/notify/v1"
	"github.com/signet-id/signet/spireid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// rotateServerSVID issues the server's own X.509-SVID for the agent listener.
func (s *Server) rotateServerSVID() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), randReader())
	if err != nil {
		return fmt.Errorf("server: generate server key: %w", err)
	}
	params := issuer.X509Params{
		ID:        spireid.ServerID(s.cfg.TrustDomain),
		PublicKey: key.Public(),
		DNSNames:  []string{"localhost"},
	}
	if s.cfg.Profile == ca.ProfileHybrid {
		alt, err := mldsa.GenerateKey(randReader(), mldsa.MLDSA44)
		if err != nil {
			return fmt.Errorf("server: generate server ML-DSA key: %w", err)
		}
		params.AltPublicKey = alt.PublicKey()
	}
	chain, err := s.issuer.X509SVID(params)
	if err != nil {
		return fmt.Errorf("server: issue server SVID: %w", err)
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	s.serverCert.Store(c)
	s.certExpiry.Store(chain[0].NotAfter.Unix())
	return nil
}

// rotationLoop reacts to CA changes (made by the scheduler's CA item, the
// LocalAuthority API or another replica) and renews the server SVID at
// half-life or when the active authority changed. It never advances the CA
// lifecycle itself: the rotation scheduler's "ca" item does, on the
// leader, at each transition the renewal policy sets.
func (s *Server) rotationLoop(ctx context.Context) {
	t := s.cfg.Clock.NewTicker(s.cfg.RotationInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.caKick:
			s.caChanged()
			continue
		case <-t.C():
		}
		if s.caUnscheduled.Load() && s.sched.IsLeader() {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			s.scheduleCA(sctx)
			cancel()
		}
		cert := s.serverCert.Load()
		if s.cfg.Clock.Now().After(issuer.RenewalTime(cert.Leaf)) {
			if err := s.rotateServerSVID(); err != nil {
				s.log.Error("server SVID rotation failed", "error", err)
			}
		}
	}
}

// caChanged reacts to a change of the CA state (here or on another
// replica): re-issue the server SVID if its signer is no longer active,
// publish the bundle, and tell the agents.
func (s *Server) caChanged() {
	now := snapshotAuthorities(s.ca)
	s.events.logTransitions(context.Background(), s.lastAuthorities, now)
	securityTransitions(context.Background(), s.log, s.lastAuthorities, now)
	s.lastAuthorities = now
	s.authorities.Store(&now)
	cert := s.serverCert.Load()
	active, _ := s.ca.X509Authority()
	if cert == nil || active == nil || cert.Leaf.CheckSignatureFrom(active) != nil {
		if err := s.rotateServerSVID(); err != nil {
			s.log.Error("server SVID rotation failed", "error", err)
		}
	}
	seq, _ := s.ca.Bundle().SequenceNumber()
	s.hub.BundleChanged(seq)
	s.writeBundleFile()
	s.notifyBundleChanged()
	if s.sched.IsLeader() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.scheduleCA(ctx)
		cancel()
	}
}

// kickCA asks the rotation loop to react to a CA change.
func (s *Server) kickCA() {
	select {
	case s.caKick <- struct{}{}:
	default:
	}
}

// pushLoop turns store events into notifications for the affected agents.
func (s *Server) pushLoop(ctx context.Context) {
	events, cancel := s.store.Subscribe()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if s.secrets != nil {
				s.secrets.EntriesChanged()
			}
			if len(ev.Bundles) > 0 {
				seq, _ := s.ca.Bundle().SequenceNumber()
				s.hub.BundleChanged(seq)
			}
			if ev.Resync {
				s.hub.EntriesChanged(ev.Revision)
				continue
			}
			if len(ev.AffectedAgents) == 0 {
				continue
			}
			affected := make(map[string]bool, len(ev.AffectedAgents))
			for _, a := range ev.AffectedAgents {
				affected[a] = true
			}
			s.hub.Publish(&notifyv1.Notification{Kind: notifyv1.Notification_KIND_ENTRIES_CHANGED, Revision: ev.Revision},
				func(agent spiffeid.ID) bool { return affected[agent.String()] })
		}
	}
}

type hubState struct{ s *Server }

func (h hubState) Revision() int64 { return h.s.store.Revision() }
func (h hubState) BundleSequence() uint64 {
	seq, _ := h.s.ca.Bundle().SequenceNumber()
	return seq
}

// BundleFile is the SPIFFE bundle JSON the server keeps current in its data
// directory, with ML-DSA JWT keys in the signet_mldsa_keys member.
const BundleFile = "bundle.spiffe.json"

// caNotifier lets the LocalAuthority API's changes take the same path as
// scheduled rotations: the rotation loop re-issues the server SVID when its
// signer is no longer active, publishes the bundle and tells the agents.
type caNotifier struct{ s *Server }

func (n caNotifier) BundleChanged(uint64) { n.s.kickCA() }

func (n caNotifier) RenewNow(ctx context.Context) { n.s.hub.RenewNow(ctx) }
