// Package client is the agent's side of the agent↔server protocol: node
// attestation (with its challenge step), agent SVID renewal, the bundle
// and authorized entries, batched workload X.509-SVIDs, JWT-SVIDs, and
// Signet's push notifications and secrets. It speaks the SPIRE server API
// (spire-api-sdk) plus the signet.* services over a connection the caller
// dials, so the agent and the rotation load test share one
// implementation.
//
// Errors the server returns are its gRPC statuses, unchanged, so callers
// branch on status.Code; errors of the client's own start with "client:".
package client

import (
	"context"
	"errors"
	"fmt"

	notifyv1 "github.com/signet-id/signet/proto/signet/notify/v1"
	secretsv1 "github.com/signet-id/signet/proto/signet/secrets/v1"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxBatch is the most X.509-SVIDs an agent asks for in one
// BatchNewX509SVID call.
const MaxBatch = 500

// Evidence is the agent half of a node attestation method: the payload
// AttestAgent opens with, and the answer to each challenge the server
// sends (a method without challenges refuses them).
type Evidence interface {
	Type() string
	Payload(ctx context.Context) ([]byte, error)
	Respond(ctx context.Context, challenge []byte) ([]byte, error)
}

// Client calls the server's agent-facing APIs over one connection.
type Client struct {
	agent   agentv1.AgentClient
	entry   entryv1.EntryClient
	svid    svidv1.SVIDClient
	bundle  bundlev1.BundleClient
	notify  notifyv1.NotifierClient
	secrets secretsv1.SecretsClient
}

// New returns a client over conn. Closing conn is the caller's.
func New(conn grpc.ClientConnInterface) *Client {
	return &Client{
		agent:   agentv1.NewAgentClient(conn),
		entry:   entryv1.NewEntryClient(conn),
		svid:    svidv1.NewSVIDClient(conn),
		bundle:  bundlev1.NewBundleClient(conn),
		notify:  notifyv1.NewNotifierClient(conn),
		secrets: secretsv1.NewSecretsClient(conn),
	}
}

// AttestResult is the outcome of AttestAgent.
type AttestResult struct {
	// SVID is the agent's first X.509-SVID (the CSR's key).
	SVID *types.X509SVID
	// Reattestable reports whether the agent may attest again.
	Reattestable bool
}

// AttestAgent attests with ev, requesting an agent SVID for csr, and
// answers the server's challenges until it sends the result.
func (c *Client) AttestAgent(ctx context.Context, ev Evidence, csr []byte) (*AttestResult, error) {
	payload, err := ev.Payload(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: %s evidence: %w", ev.Type(), err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream on every return
	stream, err := c.agent.AttestAgent(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: ev.Type(), Payload: payload},
		Params: &agentv1.AgentX509SVIDParams{Csr: csr},
	}}}); err != nil {
		return nil, recvError(stream, err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if res := resp.GetResult(); res != nil {
			_ = stream.CloseSend()
			if res.Svid == nil {
				return nil, errors.New("client: attest: server sent no SVID")
			}
			return &AttestResult{SVID: res.Svid, Reattestable: res.Reattestable}, nil
		}
		challenge := resp.GetChallenge()
		if challenge == nil {
			return nil, errors.New("client: attest: server sent neither a challenge nor a result")
		}
		answer, err := ev.Respond(ctx, challenge)
		if err != nil {
			return nil, fmt.Errorf("client: attest: answer %s challenge: %w", ev.Type(), err)
		}
		if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_ChallengeResponse{ChallengeResponse: answer}}); err != nil {
			return nil, recvError(stream, err)
		}
	}
}

// recvError returns the server's status when a Send failed because the
// server ended the stream (gRPC reports that as io.EOF on Send).
func recvError(stream agentv1.Agent_AttestAgentClient, sendErr error) error {
	if _, err := stream.Recv(); err != nil {
		if _, ok := status.FromError(err); ok {
			return err
		}
	}
	return sendErr
}

// RenewAgent renews the calling agent's SVID for csr.
func (c *Client) RenewAgent(ctx context.Context, csr []byte) (*types.X509SVID, error) {
	resp, err := c.agent.RenewAgent(ctx, &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{Csr: csr}})
	if err != nil {
		return nil, err
	}
	return resp.Svid, nil
}

// Bundle returns the trust domain's own bundle.
func (c *Client) Bundle(ctx context.Context) (*types.Bundle, error) {
	return c.bundle.GetBundle(ctx, &bundlev1.GetBundleRequest{})
}

// FederatedBundle returns the bundle of a federated trust domain.
func (c *Client) FederatedBundle(ctx context.Context, trustDomain string) (*types.Bundle, error) {
	return c.bundle.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: trustDomain})
}

// AuthorizedEntries returns the entries the calling agent may obtain
// SVIDs for.
func (c *Client) AuthorizedEntries(ctx context.Context) ([]*types.Entry, error) {
	resp, err := c.entry.GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{})
	if err != nil {
		return nil, err
	}
	return resp.Entries, nil
}

// X509SVIDRequest asks for the SVID of one entry.
type X509SVIDRequest struct {
	EntryID string
	CSR     []byte
}

// X509SVIDResult is the server's answer for one X509SVIDRequest: the SVID,
// or Err (a gRPC status) when the server refused it.
type X509SVIDResult struct {
	SVID *types.X509SVID
	Err  error
}

// NewX509SVIDs requests the SVIDs of reqs (at most MaxBatch) in one call.
// Results are in request order; a server that answers fewer leaves the
// slice shorter, never longer.
func (c *Client) NewX509SVIDs(ctx context.Context, reqs []X509SVIDRequest) ([]X509SVIDResult, error) {
	if len(reqs) > MaxBatch {
		return nil, fmt.Errorf("client: %d SVID requests in one batch, more than %d", len(reqs), MaxBatch)
	}
	req := &svidv1.BatchNewX509SVIDRequest{Params: make([]*svidv1.NewX509SVIDParams, len(reqs))}
	for i, r := range reqs {
		req.Params[i] = &svidv1.NewX509SVIDParams{EntryId: r.EntryID, Csr: r.CSR}
	}
	resp, err := c.svid.BatchNewX509SVID(ctx, req)
	if err != nil {
		return nil, err
	}
	results := resp.Results[:min(len(resp.Results), len(reqs))]
	out := make([]X509SVIDResult, len(results))
	for i, r := range results {
		if code := codes.Code(r.GetStatus().GetCode()); code != codes.OK {
			out[i].Err = status.Error(code, r.GetStatus().GetMessage())
			continue
		}
		out[i].SVID = r.Svid
	}
	return out, nil
}

// NewJWTSVID mints a JWT-SVID for an entry the agent is authorized for.
func (c *Client) NewJWTSVID(ctx context.Context, entryID string, audience []string) (*types.JWTSVID, error) {
	resp, err := c.svid.NewJWTSVID(ctx, &svidv1.NewJWTSVIDRequest{EntryId: entryID, Audience: audience})
	if err != nil {
		return nil, err
	}
	return resp.Svid, nil
}

// Watch opens the push notification stream (signet.notify.v1). A server
// without it (such as SPIRE) answers Unimplemented.
func (c *Client) Watch(ctx context.Context) (notifyv1.Notifier_WatchClient, error) {
	return c.notify.Watch(ctx, &notifyv1.WatchRequest{})
}

// Secrets returns the client of the signet.secrets.v1 service on the same
// connection.
func (c *Client) Secrets() secretsv1.SecretsClient { return c.secrets }
