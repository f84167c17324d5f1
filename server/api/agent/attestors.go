package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/awsiid"
	"github.com/signet-id/signet/attest/azuremsi"
	"github.com/signet-id/signet/attest/gcpiit"
	"github.com/signet-id/signet/attest/jointoken"
	"github.com/signet-id/signet/attest/sshpop"
	"github.com/signet-id/signet/attest/x509pop"
	"github.com/signet-id/signet/server/store"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// NodeAttestor verifies the evidence of one node attestation method.
// Attest may exchange challenges with the agent through req.Challenge;
// its errors should be gRPC statuses (they reach the agent as they are;
// any other error is sent as Internal).
type NodeAttestor interface {
	Type() string
	Attest(ctx context.Context, req attest.NodeRequest) (attest.NodeResult, error)
}

// payloadChecker is implemented by attestors that bound their payload
// before anything else in the request is looked at.
type payloadChecker interface {
	CheckPayload(payload []byte) error
}

var (
	_ NodeAttestor   = (*jointoken.Attestor)(nil)
	_ payloadChecker = (*jointoken.Attestor)(nil)
	_ NodeAttestor   = (*x509pop.Attestor)(nil)
	_ payloadChecker = (*x509pop.Attestor)(nil)
	_ NodeAttestor   = (*sshpop.Attestor)(nil)
	_ payloadChecker = (*sshpop.Attestor)(nil)
	_ NodeAttestor   = (*awsiid.Attestor)(nil)
	_ payloadChecker = (*awsiid.Attestor)(nil)
	_ NodeAttestor   = (*gcpiit.Attestor)(nil)
	_ payloadChecker = (*gcpiit.Attestor)(nil)
	_ NodeAttestor   = (*azuremsi.Attestor)(nil)
	_ payloadChecker = (*azuremsi.Attestor)(nil)
)

// nodeAttestors indexes attestors by type name. With none given, join
// tokens from the service's store are the one method. Two attestors of
// one type are a wiring mistake: it panics.
func nodeAttestors(cfg Config) map[string]NodeAttestor {
	list := cfg.NodeAttestors
	if len(list) == 0 && cfg.Store != nil {
		jt, err := jointoken.NewAttestor(jointoken.Config{
			TrustDomain: cfg.TrustDomain, Tokens: cfg.Store,
			NotFound: store.ErrNotFound, Expired: store.ErrExpired, Now: cfg.Now,
		})
		if err != nil {
			cfg.Logger.Warn("agent: join token attestation unavailable", "error", err)
		} else {
			list = []NodeAttestor{jt}
		}
	}
	m := make(map[string]NodeAttestor, len(list))
	for _, a := range list {
		if _, dup := m[a.Type()]; dup {
			panic(fmt.Sprintf("agent: two node attestors of type %q", a.Type()))
		}
		m[a.Type()] = a
	}
	return m
}

// supported lists the attestation types served, for error messages.
func (s *Service) supported() string {
	names := make([]string, 0, len(s.attestors))
	for name := range s.attestors {
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// challenger runs the challenge step of AttestAgent on stream: send the
// challenge, read the agent's response.
func challenger(stream agentv1.Agent_AttestAgentServer) attest.Challenger {
	return func(ctx context.Context, challenge []byte) ([]byte, error) {
		if err := stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Challenge{Challenge: challenge}}); err != nil {
			return nil, fmt.Errorf("agent: send challenge: %w", err)
		}
		req, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("agent: receive challenge response: %w", err)
		}
		resp := req.GetChallengeResponse()
		if resp == nil {
			return nil, status.Error(codes.InvalidArgument, "malformed param: expected a challenge response")
		}
		return resp, nil
	}
}
