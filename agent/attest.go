package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/attest/jointoken"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// NodeEvidence is the agent half of a node attestation method: the
// payload it opens AttestAgent with, and its answer to each challenge the
// server sends (methods without challenges refuse them).
type NodeEvidence interface {
	Type() string
	Payload(ctx context.Context) ([]byte, error)
	Respond(ctx context.Context, challenge []byte) ([]byte, error)
}

var _ NodeEvidence = (*jointoken.Evidence)(nil)

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
	payload, err := ev.Payload(ctx)
	if err != nil {
		return fmt.Errorf("agent: attest: %w", err)
	}
	stream, err := agentv1.NewAgentClient(conn).AttestAgent(ctx)
	if err != nil {
		return fmt.Errorf("agent: attest: %w", err)
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: ev.Type(), Payload: payload},
		Params: &agentv1.AgentX509SVIDParams{Csr: csr},
	}}}); err != nil {
		return fmt.Errorf("agent: attest: %w", err)
	}
	var res *agentv1.AttestAgentResponse_Result
	for res == nil {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("agent: attest: %w", err)
		}
		if res = resp.GetResult(); res != nil {
			break
		}
		challenge := resp.GetChallenge()
		if challenge == nil {
			return errors.New("agent: attest: server sent neither a challenge nor a result")
		}
		answer, err := ev.Respond(ctx, challenge)
		if err != nil {
			return fmt.Errorf("agent: attest: answer challenge: %w", err)
		}
		if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_ChallengeResponse{ChallengeResponse: answer}}); err != nil {
			return fmt.Errorf("agent: attest: %w", err)
		}
	}
	_ = stream.CloseSend()
	if res.Svid == nil {
		return errors.New("agent: attest: server sent no SVID")
	}
	if _, err := a.adoptAgentSVID(res.Svid.CertChain, key, altKey); err != nil {
		return err
	}
	a.m.attestations.Inc()
	a.log.Info("agent attested", "agent_id", a.AgentID().String(), "attestation_type", ev.Type())
	return nil
}
