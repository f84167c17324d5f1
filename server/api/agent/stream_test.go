package agent_test

import (
	"testing"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// attestStream runs AttestAgent for typ with payload, answering each
// challenge with answer.
func (e *env) attestStream(t *testing.T, typ string, payload []byte, answer func([]byte) []byte) (*agentv1.AttestAgentResponse_Result, error) {
	t.Helper()
	stream, err := e.client.AttestAgent(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: typ, Payload: payload},
		Params: &agentv1.AgentX509SVIDParams{Csr: newCSR(t)},
	}}}); err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if res := resp.GetResult(); res != nil {
			return res, nil
		}
		if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_ChallengeResponse{ChallengeResponse: answer(resp.GetChallenge())}}); err != nil {
			return nil, err
		}
	}
}
