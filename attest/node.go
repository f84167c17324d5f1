// Package attest holds what the node attestation methods share: the shape
// of one attestation attempt as the server sees it (the agent's evidence,
// a challenge–response exchange with the agent, an admission check) and
// its outcome (the agent ID, selectors, whether the agent may attest
// again). Each method lives in its own package below this one.
package attest

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// Challenger sends challenge to the agent being attested and returns its
// response. It is the challenge step of SPIRE's AttestAgent stream: a
// method that proves possession of a key (x509pop, sshpop, tpmdevid)
// calls it once or more; a method that does not (join_token) never does.
type Challenger func(ctx context.Context, challenge []byte) (response []byte, err error)

// NodeRequest is one node attestation attempt.
type NodeRequest struct {
	// Payload is the agent's evidence (AttestationData.payload).
	Payload []byte
	// Challenge exchanges a challenge for a response with the agent.
	Challenge Challenger
	// Admit, when set, refuses an agent ID (for example a banned one). A
	// method whose evidence can be used only once (a join token) calls it
	// before spending the evidence, and returns its error unchanged.
	Admit func(ctx context.Context, id spiffeid.ID) error
	// Attested, when set, reports whether an agent with this ID was already
	// attested (SPIRE's AgentStore host service). Trust-on-first-use
	// methods (aws_iid, gcp_iit, azure_msi) refuse evidence of an agent
	// that is, as SPIRE's AssessTOFU does.
	Attested func(ctx context.Context, id spiffeid.ID) (bool, error)
}

// NodeResult is a successful node attestation.
type NodeResult struct {
	// AgentID is the agent's SPIFFE ID (spiffe://<td>/spire/agent/<method>/…).
	AgentID spiffeid.ID
	// Selectors describe the node, for entries that select agents.
	Selectors []*types.Selector
	// CanReattest reports whether the agent may attest again with fresh
	// evidence of the same method once its SVID is gone.
	CanReattest bool
}
