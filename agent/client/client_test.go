package client_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/agent/client"
	"github.com/signet-id/signet/attest/jointoken"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// fakeServer answers AttestAgent like a proof-of-possession method: type
// "pop" gets one challenge and must send it back reversed; "join_token"
// gets its result at once. BatchNewX509SVID refuses entries named "bad".
type fakeServer struct {
	agentv1.UnimplementedAgentServer
	svidv1.UnimplementedSVIDServer
	short bool // BatchNewX509SVID answers one result fewer
}

func (fakeServer) AttestAgent(stream agentv1.Agent_AttestAgentServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	data := req.GetParams().GetData()
	switch data.GetType() {
	case "join_token":
	case "pop":
		if err := stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Challenge{Challenge: []byte("abc")}}); err != nil {
			return err
		}
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if string(resp.GetChallengeResponse()) != "cba" {
			return status.Error(codes.PermissionDenied, "failed to attest: wrong challenge response")
		}
	default:
		return status.Errorf(codes.FailedPrecondition, "could not find node attestor type %q", data.GetType())
	}
	return stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Result_{Result: &agentv1.AttestAgentResponse_Result{
		Svid: &types.X509SVID{CertChain: [][]byte{data.GetPayload()}}, Reattestable: data.GetType() == "pop",
	}}})
}

func (f fakeServer) BatchNewX509SVID(_ context.Context, req *svidv1.BatchNewX509SVIDRequest) (*svidv1.BatchNewX509SVIDResponse, error) {
	resp := &svidv1.BatchNewX509SVIDResponse{}
	for _, p := range req.Params {
		if p.EntryId == "bad" {
			resp.Results = append(resp.Results, &svidv1.BatchNewX509SVIDResponse_Result{Status: &types.Status{Code: int32(codes.NotFound), Message: "entry not found"}})
			continue
		}
		resp.Results = append(resp.Results, &svidv1.BatchNewX509SVIDResponse_Result{Status: &types.Status{}, Svid: &types.X509SVID{CertChain: [][]byte{p.Csr}}})
	}
	if f.short {
		resp.Results = resp.Results[:len(resp.Results)-1]
	}
	return resp, nil
}

func newClient(t *testing.T, f fakeServer) *client.Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	agentv1.RegisterAgentServer(g, f)
	svidv1.RegisterSVIDServer(g, f)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return client.New(conn)
}

// evidence is a test client.Evidence.
type evidence struct {
	typ, payload string
	respond      func([]byte) ([]byte, error)
	payloadErr   error
}

func (e evidence) Type() string { return e.typ }
func (e evidence) Payload(context.Context) ([]byte, error) {
	return []byte(e.payload), e.payloadErr
}
func (e evidence) Respond(_ context.Context, c []byte) ([]byte, error) { return e.respond(c) }

func reverse(b []byte) ([]byte, error) {
	out := bytes.Clone(b)
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAttestAgent(t *testing.T) {
	c := newClient(t, fakeServer{})
	echo := func(b []byte) ([]byte, error) { return b, nil }
	tests := []struct {
		name         string
		ev           client.Evidence
		reattestable bool
		code         codes.Code // OK: attested, the SVID echoes the payload
		msg          string
	}{
		{"join token", jointoken.NewEvidence("tok-0123456789abcdef"), false, codes.OK, ""},
		{"challenge answered", evidence{typ: "pop", payload: "p1", respond: reverse}, true, codes.OK, ""},
		{"challenge answered wrong", evidence{typ: "pop", payload: "p1", respond: echo}, false, codes.PermissionDenied, "wrong challenge response"},
		{"unknown type", evidence{typ: "nope", payload: "p1"}, false, codes.FailedPrecondition, "could not find node attestor"},
		{"challenge refused by the evidence", evidence{typ: "pop", payload: "p1", respond: func([]byte) ([]byte, error) { return nil, errors.New("no key") }}, false, codes.Unknown, "answer pop challenge: no key"},
		{"no payload", evidence{typ: "pop", payloadErr: errors.New("no token")}, false, codes.Unknown, "pop evidence: no token"},
		{"join token refuses challenges", jointoken.NewEvidence("tok"), false, codes.Unknown, "has no challenges"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := tt.ev
			if tt.name == "join token refuses challenges" {
				// A join token presented to a method that challenges.
				ev = evidence{typ: "pop", payload: "p1", respond: func(b []byte) ([]byte, error) { return jointoken.NewEvidence("tok").Respond(context.Background(), b) }}
			}
			res, err := c.AttestAgent(testContext(t), ev, []byte("csr"))
			if tt.code != codes.OK {
				if err == nil || status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("AttestAgent: %v, want %v saying %q", err, tt.code, tt.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("AttestAgent: %v", err)
			}
			payload, _ := tt.ev.Payload(context.Background())
			if !bytes.Equal(res.SVID.CertChain[0], payload) || res.Reattestable != tt.reattestable {
				t.Fatalf("AttestAgent = %+v", res)
			}
		})
	}
}

func TestNewX509SVIDs(t *testing.T) {
	reqs := []client.X509SVIDRequest{{EntryID: "a", CSR: []byte("csr-a")}, {EntryID: "bad", CSR: []byte("csr-bad")}, {EntryID: "c", CSR: []byte("csr-c")}}
	tests := []struct {
		name string
		fake fakeServer
		want []string // per result: the SVID's chain, or "!" plus the refusal's code
	}{
		{"all answered", fakeServer{}, []string{"csr-a", "!NotFound", "csr-c"}},
		{"server answers fewer", fakeServer{short: true}, []string{"csr-a", "!NotFound"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newClient(t, tt.fake).NewX509SVIDs(testContext(t), reqs)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d results, want %d", len(got), len(tt.want))
			}
			for i, r := range got {
				s := ""
				if r.Err != nil {
					s = "!" + status.Code(r.Err).String()
				} else {
					s = string(r.SVID.CertChain[0])
				}
				if s != tt.want[i] {
					t.Errorf("result %d = %q, want %q", i, s, tt.want[i])
				}
			}
		})
	}
	if _, err := newClient(t, fakeServer{}).NewX509SVIDs(testContext(t), make([]client.X509SVIDRequest, client.MaxBatch+1)); err == nil {
		t.Fatal("a batch over MaxBatch was sent")
	}
}

func TestServerErrorsAreStatuses(t *testing.T) {
	c := newClient(t, fakeServer{})
	_, err := c.RenewAgent(testContext(t), []byte("csr"))
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("RenewAgent on a server without it: %v, want the server's Unimplemented", err)
	}
	if _, err := c.Bundle(testContext(t)); status.Code(err) != codes.Unimplemented {
		t.Fatalf("Bundle: %v", err)
	}
}
