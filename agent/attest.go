package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/agent/client"
	"github.com/signet-id/signet/attest/awsiid"
	"github.com/signet-id/signet/attest/azuremsi"
	"github.com/signet-id/signet/attest/gcpiit"
	"github.com/signet-id/signet/attest/jointoken"
	"github.com/signet-id/signet/attest/sshpop"
	"github.com/signet-id/signet/attest/tpmdevid"
	"github.com/signet-id/signet/attest/x509pop"
)

// NodeEvidence is the agent half of a node attestation method: the
// payload it opens AttestAgent with, and its answer to each challenge the
// server sends (methods without challenges refuse them).
type NodeEvidence = client.Evidence

var (
	_ NodeEvidence = (*jointoken.Evidence)(nil)
	_ NodeEvidence = (*x509pop.Evidence)(nil)
	_ NodeEvidence = (*sshpop.Evidence)(nil)
	_ NodeEvidence = (*awsiid.Evidence)(nil)
	_ NodeEvidence = (*gcpiit.Evidence)(nil)
	_ NodeEvidence = (*azuremsi.Evidence)(nil)
	_ NodeEvidence = (*tpmdevid.Evidence)(nil)
)

// evidence returns the configured node evidence, or join-token evidence.
func (a *Agent) evidence() (NodeEvidence, error) {
	if a.cfg.NodeEvidence != nil {
		return a.cfg.NodeEvidence, nil
	}
	if a.cfg.JoinToken == "" {
		return nil, errors.New("agent: not attested yet and no join token: pass --join-token (create one with `signet token generate`)")
	}
	return jointoken.NewEvidence(a.cfg.JoinToken), nil
}

// attest obtains the first agent SVID from the server at addr.
func (a *Agent) attest(ctx context.Context, addr string) error {
	ev, err := a.evidence()
	if err != nil {
		return err
	}
	conn, err := a.dial(addr, a.roots(), nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	key, err := a.newKey()
	if err != nil {
		return err
	}
	csr, altKey, err := a.csr(key)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := client.New(conn).AttestAgent(ctx, ev, csr)
	if err != nil {
		return fmt.Errorf("agent: attest: %w", err)
	}
	if _, err := a.adoptAgentSVID(res.SVID.CertChain, key, altKey); err != nil {
		return err
	}
	a.m.attestations.Inc()
	a.log.Info("agent attested", "agent_id", a.AgentID().String(), "attestation_type", ev.Type())
	return nil
}
