package spire

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// apiCase is one API call made against both servers. call returns a
// proto message or any JSON-encodable value; the gRPC code and the
// normalized response are compared.
type apiCase struct {
	name   string
	call   func(ctx context.Context, b *backend) (any, error)
	ignore []string
	// deviation documents a known difference: expectDiff lists the exact
	// diffJSON lines between the Signet and SPIRE outcomes.
	deviation  string
	expectDiff []string
}

// outcome renders a call's result as normalized JSON: {"code", "response"}.
func outcome(resp any, err error, ignore []string) (any, error) {
	doc := map[string]any{"code": status.Code(err).String()}
	if err == nil {
		var raw []byte
		if m, ok := resp.(proto.Message); ok {
			raw, err = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
		} else {
			raw, err = json.Marshal(resp)
		}
		if err != nil {
			return nil, err
		}
		v, err := normalize(string(raw), nil, ignore...)
		if err != nil {
			return nil, err
		}
		doc["response"] = v
	}
	out, _ := json.Marshal(doc)
	return normalize(string(out), nil)
}

func runAPICases(t *testing.T, sg, sp *backend, cases []apiCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ra, ea := c.call(ctx, sg)
			rb, eb := c.call(ctx, sp)
			oa, err := outcome(ra, ea, c.ignore)
			if err != nil {
				t.Fatalf("signet: %v", err)
			}
			ob, err := outcome(rb, eb, c.ignore)
			if err != nil {
				t.Fatalf("spire: %v", err)
			}
			d := diffJSON("", oa, ob)
			if c.deviation != "" {
				if !slices.Equal(d, c.expectDiff) {
					t.Errorf("documented deviation (%s) changed: want diff %q, got %q\nsignet error: %v\nspire error: %v", c.deviation, c.expectDiff, d, ea, eb)
				}
				return
			}
			if len(d) > 0 {
				t.Errorf("Signet and SPIRE differ (signet vs spire):\n  %s\nsignet: %v %v\nspire:  %v %v", strings.Join(d, "\n  "), ra, ea, rb, eb)
			}
		})
	}
}

// batchResult is one item's result in a batch response.
type batchResult interface{ GetStatus() *types.Status }

// codesOf lists the per-item statuses of a batch response.
func codesOf[R batchResult](results []R) codeList {
	out := make(codeList, 0, len(results))
	for _, r := range results {
		out = append(out, itemStatus{codes.Code(r.GetStatus().GetCode()).String(), r.GetStatus().GetMessage()})
	}
	return out
}

// itemStatus is a per-item status; only its code is compared.
type itemStatus struct {
	Code    string
	message string
}

// codeList encodes as one string so that item order is kept.
type codeList []itemStatus

func (l codeList) MarshalJSON() ([]byte, error) {
	parts := make([]string, len(l))
	for i, s := range l {
		parts[i] = fmt.Sprintf("%d:%s", i, s.Code)
	}
	return json.Marshal(strings.Join(parts, " "))
}

func (l codeList) String() string {
	parts := make([]string, len(l))
	for i, s := range l {
		parts[i] = fmt.Sprintf("%d:%s(%s)", i, s.Code, s.message)
	}
	return strings.Join(parts, "\n    ")
}

// paged is the shape of a paginated listing that both servers must agree
// on: the items, whether more than one page was needed, and that no page
// exceeded the page size. The exact page boundaries are not compared: SPIRE
// ends with an empty page where Signet does not, and SPIRE's federated
// bundle pages shrink where its own bundle is filtered out.
type paged struct {
	Items     []string `json:"items"`
	Paginated bool     `json:"paginated"`
	WithinMax bool     `json:"within_page_size"`
}

// pages lists every page of a paginated call.
func pages(pageSize int, list func(token string) (items []string, next string, err error)) (paged, error) {
	p := paged{WithinMax: true}
	token := ""
	for i := 0; i < 100; i++ {
		items, next, err := list(token)
		if err != nil {
			return p, err
		}
		p.Items = append(p.Items, items...)
		if len(items) > pageSize {
			p.WithinMax = false
		}
		if next == "" {
			slices.Sort(p.Items)
			return p, nil
		}
		p.Paginated = true
		token = next
	}
	return p, fmt.Errorf("more than 100 pages")
}

// uniq gives an entry a SPIFFE ID path of its own, so that an entry SPIRE
// accepts is not refused as similar to another.
func uniq(id *types.SPIFFEID, n int) *types.SPIFFEID {
	if id == nil {
		return nil
	}
	return &types.SPIFFEID{TrustDomain: id.TrustDomain, Path: fmt.Sprintf("/u%d", n)}
}

// federatedBundle returns a bundle for another trust domain with one X.509
// authority and one JWT key.
func federatedBundle(t *testing.T, trustDomain string) *types.Bundle {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &types.Bundle{
		TrustDomain:     trustDomain,
		X509Authorities: []*types.X509Certificate{{Asn1: federationCA(t, trustDomain).Raw}},
		JwtAuthorities:  []*types.JWTKey{{KeyId: "kid-" + trustDomain, PublicKey: der, ExpiresAt: 4102444800}},
		RefreshHint:     60,
		SequenceNumber:  3,
	}
}

// TestAPISemanticsAgainstSPIRE makes the same Agent, Bundle and Entry API
// calls against a Signet server and a real spire-server holding the same
// state, and compares status codes (whole-call and per item), filters,
// pagination and output masks. Cases already covered one-sidedly by
// server/api/entry's tests are checked here only where SPIRE's real answer
// matters: the status code of each invalid entry.
func TestAPISemanticsAgainstSPIRE(t *testing.T) {
	bins := spireBinaries(t)
	ss := startSPIREServer(t, bins)
	sgs := startSignet(t, signetOptions{})
	sg := newBackend(t, "signet", bins.server, sgs.AdminSocket(), sgs.AgentAddr().String())
	sp := newBackend(t, "spire", bins.server, ss.socket, ss.addr)
	tokens := []string{"tok-1-0123456789", "tok-2-0123456789", "tok-3-0123456789", "tok-4-0123456789", "tok-5-0123456789"}
	agentID := func(tok string) *types.SPIFFEID {
		return &types.SPIFFEID{TrustDomain: td.Name(), Path: "/spire/agent/join_token/" + tok}
	}
	fedA, fedB := federatedBundle(t, "a.example"), federatedBundle(t, "b.example")
	for _, b := range []*backend{sg, sp} {
		for _, tok := range tokens {
			b.createToken(t, tok)
			b.attest(t, tok)
		}
		if _, err := agentv1.NewAgentClient(b.admin).BanAgent(context.Background(), &agentv1.BanAgentRequest{Id: agentID("tok-5-0123456789")}); err != nil {
			t.Fatal(err)
		}
		b.createToken(t, "tok-unused-0123456789")
	}
	agentClient := func(b *backend) agentv1.AgentClient { return agentv1.NewAgentClient(b.admin) }
	bundleClient := func(b *backend) bundlev1.BundleClient { return bundlev1.NewBundleClient(b.admin) }
	entryClient := func(b *backend) entryv1.EntryClient { return entryv1.NewEntryClient(b.admin) }
	agentIgnore := []string{"x509svid_serial_number"}

	listAgents := func(req *agentv1.ListAgentsRequest) func(context.Context, *backend) (any, error) {
		return func(ctx context.Context, b *backend) (any, error) {
			return agentClient(b).ListAgents(ctx, req)
		}
	}
	countAgents := func(f *agentv1.CountAgentsRequest_Filter) func(context.Context, *backend) (any, error) {
		return func(ctx context.Context, b *backend) (any, error) {
			return agentClient(b).CountAgents(ctx, &agentv1.CountAgentsRequest{Filter: f})
		}
	}

	t.Run("Agent", func(t *testing.T) {
		runAPICases(t, sg, sp, []apiCase{
			{name: "ListAgents all", call: listAgents(&agentv1.ListAgentsRequest{}), ignore: agentIgnore},
			{name: "ListAgents by_banned true", call: listAgents(&agentv1.ListAgentsRequest{Filter: &agentv1.ListAgentsRequest_Filter{ByBanned: wrapperspb.Bool(true)}}), ignore: agentIgnore},
			{name: "ListAgents by_banned false", call: listAgents(&agentv1.ListAgentsRequest{Filter: &agentv1.ListAgentsRequest_Filter{ByBanned: wrapperspb.Bool(false)}}), ignore: agentIgnore},
			{name: "ListAgents by_attestation_type", call: listAgents(&agentv1.ListAgentsRequest{Filter: &agentv1.ListAgentsRequest_Filter{ByAttestationType: "join_token"}}), ignore: agentIgnore},
			{name: "ListAgents by_attestation_type other", call: listAgents(&agentv1.ListAgentsRequest{Filter: &agentv1.ListAgentsRequest_Filter{ByAttestationType: "x509pop"}})},
			{name: "ListAgents by_can_reattest true", call: listAgents(&agentv1.ListAgentsRequest{Filter: &agentv1.ListAgentsRequest_Filter{ByCanReattest: wrapperspb.Bool(true)}})},
			{name: "ListAgents by_selector_match any", call: listAgents(&agentv1.ListAgentsRequest{Filter: &agentv1.ListAgentsRequest_Filter{
				BySelectorMatch: &types.SelectorMatch{Selectors: []*types.Selector{{Type: "unix", Value: "uid:0"}}, Match: types.SelectorMatch_MATCH_ANY}}})},
			{name: "ListAgents by_selector_match empty", call: listAgents(&agentv1.ListAgentsRequest{Filter: &agentv1.ListAgentsRequest_Filter{
				BySelectorMatch: &types.SelectorMatch{Match: types.SelectorMatch_MATCH_ANY}}}),
				deviation:  "SPIRE reports an empty selector set as Internal; Signet as InvalidArgument",
				expectDiff: []string{`.code: "InvalidArgument" vs "Internal"`}},
			{name: "ListAgents by_expires_before past", call: listAgents(&agentv1.ListAgentsRequest{Filter: &agentv1.ListAgentsRequest_Filter{ByExpiresBefore: "2000-01-01 00:00:00 +0000 +00"}})},
			{name: "ListAgents by_expires_before future", call: listAgents(&agentv1.ListAgentsRequest{Filter: &agentv1.ListAgentsRequest_Filter{ByExpiresBefore: "2100-01-01 00:00:00 +0000 +00"}}), ignore: agentIgnore},
			{name: "ListAgents by_expires_before malformed", call: func(ctx context.Context, b *backend) (any, error) {
				r, err := agentClient(b).ListAgents(ctx, &agentv1.ListAgentsRequest{Filter: &agentv1.ListAgentsRequest_Filter{ByExpiresBefore: "tomorrow"}})
				return map[string]int{"agents": len(r.GetAgents())}, err
			},
				deviation:  "SPIRE ignores a malformed by_expires_before and lists every agent; Signet refuses it",
				expectDiff: []string{`.code: "InvalidArgument" vs "OK"`, `.response: null vs {"agents":5}`}},
			{name: "ListAgents output mask empty", call: listAgents(&agentv1.ListAgentsRequest{OutputMask: &types.AgentMask{}})},
			{name: "ListAgents output mask fields", call: listAgents(&agentv1.ListAgentsRequest{OutputMask: &types.AgentMask{AttestationType: true, Banned: true}})},
			{name: "ListAgents pagination", call: func(ctx context.Context, b *backend) (any, error) {
				return pages(2, func(token string) ([]string, string, error) {
					r, err := agentClient(b).ListAgents(ctx, &agentv1.ListAgentsRequest{PageSize: 2, PageToken: token, OutputMask: &types.AgentMask{}})
					if err != nil {
						return nil, "", err
					}
					var ids []string
					for _, a := range r.Agents {
						ids = append(ids, a.Id.Path)
					}
					return ids, r.NextPageToken, nil
				})
			}},
			{name: "ListAgents negative page_size", call: func(ctx context.Context, b *backend) (any, error) {
				r, err := agentClient(b).ListAgents(ctx, &agentv1.ListAgentsRequest{PageSize: -1, OutputMask: &types.AgentMask{}})
				return map[string]int{"agents": len(r.GetAgents())}, err
			}},
			{name: "ListAgents bad page_token", call: func(ctx context.Context, b *backend) (any, error) {
				r, err := agentClient(b).ListAgents(ctx, &agentv1.ListAgentsRequest{PageSize: 2, PageToken: "not-a-token", OutputMask: &types.AgentMask{}})
				return map[string]int{"agents": len(r.GetAgents())}, err
			},
				deviation:  "SPIRE fails a malformed page token with Internal; Signet's store reads it as a position and lists from there",
				expectDiff: []string{`.code: "OK" vs "Internal"`, `.response: {"agents":2} vs null`}},
			{name: "CountAgents all", call: countAgents(nil)},
			{name: "CountAgents by_banned", call: countAgents(&agentv1.CountAgentsRequest_Filter{ByBanned: wrapperspb.Bool(true)})},
			{name: "CountAgents by_attestation_type", call: countAgents(&agentv1.CountAgentsRequest_Filter{ByAttestationType: "join_token"})},
			{name: "GetAgent", call: func(ctx context.Context, b *backend) (any, error) {
				return agentClient(b).GetAgent(ctx, &agentv1.GetAgentRequest{Id: agentID("tok-1-0123456789")})
			}, ignore: agentIgnore},
			{name: "GetAgent output mask", call: func(ctx context.Context, b *backend) (any, error) {
				return agentClient(b).GetAgent(ctx, &agentv1.GetAgentRequest{Id: agentID("tok-1-0123456789"), OutputMask: &types.AgentMask{AttestationType: true}})
			}},
			{name: "GetAgent unknown", call: func(ctx context.Context, b *backend) (any, error) {
				return agentClient(b).GetAgent(ctx, &agentv1.GetAgentRequest{Id: agentID("nope")})
			}},
			{name: "GetAgent no id", call: func(ctx context.Context, b *backend) (any, error) {
				return agentClient(b).GetAgent(ctx, &agentv1.GetAgentRequest{})
			}},
			{name: "GetAgent foreign trust domain", call: func(ctx context.Context, b *backend) (any, error) {
				return agentClient(b).GetAgent(ctx, &agentv1.GetAgentRequest{Id: &types.SPIFFEID{TrustDomain: "other.org", Path: "/spire/agent/join_token/tok-1-0123456789"}})
			}},
			{name: "GetAgent not an agent ID", call: func(ctx context.Context, b *backend) (any, error) {
				return agentClient(b).GetAgent(ctx, &agentv1.GetAgentRequest{Id: &types.SPIFFEID{TrustDomain: td.Name(), Path: "/workload"}})
			}},
			{name: "DeleteAgent unknown", call: func(ctx context.Context, b *backend) (any, error) {
				return agentClient(b).DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: agentID("nope")})
			}},
			{name: "DeleteAgent", call: func(ctx context.Context, b *backend) (any, error) {
				return agentClient(b).DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: agentID("tok-4-0123456789")})
			}},
			{name: "BanAgent unknown", call: func(ctx context.Context, b *backend) (any, error) {
				return agentClient(b).BanAgent(ctx, &agentv1.BanAgentRequest{Id: agentID("tok-4-0123456789")})
			}},
			{name: "BanAgent no id", call: func(ctx context.Context, b *backend) (any, error) {
				return agentClient(b).BanAgent(ctx, &agentv1.BanAgentRequest{})
			}},
			{name: "CreateJoinToken zero ttl", call: func(ctx context.Context, b *backend) (any, error) {
				return agentClient(b).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{})
			}},
			{name: "CreateJoinToken duplicate value", call: func(ctx context.Context, b *backend) (any, error) {
				return agentClient(b).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 60, Token: "tok-unused-0123456789"})
			},
				deviation:  "SPIRE reports a duplicate token value as Internal (a SQL constraint error); Signet as AlreadyExists",
				expectDiff: []string{`.code: "AlreadyExists" vs "Internal"`}},
			{name: "CreateJoinToken foreign agent_id", call: func(ctx context.Context, b *backend) (any, error) {
				return agentClient(b).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 60, AgentId: &types.SPIFFEID{TrustDomain: "other.org", Path: "/x"}})
			}},
			{name: "AttestAgent reused token", call: func(ctx context.Context, b *backend) (any, error) {
				_, err := b.attestErr("tok-1-0123456789")
				return &agentv1.AttestAgentResponse{}, err
			}},
			{name: "AttestAgent unknown token", call: func(ctx context.Context, b *backend) (any, error) {
				_, err := b.attestErr("never-issued")
				return &agentv1.AttestAgentResponse{}, err
			}},
			{name: "AttestAgent evicted agent with new token", call: func(ctx context.Context, b *backend) (any, error) {
				// tok-4's agent was deleted; a fresh token attests a new agent.
				id, err := b.attestErr("tok-unused-0123456789")
				return map[string]string{"id": id.String()}, err
			}},
			{name: "RenewAgent without agent SVID", call: func(ctx context.Context, b *backend) (any, error) {
				conn, err := b.agentConn(ctx)
				if err != nil {
					return nil, err
				}
				defer conn.Close()
				return agentv1.NewAgentClient(conn).RenewAgent(ctx, &agentv1.RenewAgentRequest{})
			}},
			{name: "ListAgents from agent endpoint without SVID", call: func(ctx context.Context, b *backend) (any, error) {
				conn, err := b.agentConn(ctx)
				if err != nil {
					return nil, err
				}
				defer conn.Close()
				return agentv1.NewAgentClient(conn).ListAgents(ctx, &agentv1.ListAgentsRequest{})
			}},
		})
	})

	t.Run("Bundle", func(t *testing.T) {
		bad := &types.Bundle{TrustDomain: "c.example", X509Authorities: []*types.X509Certificate{{Asn1: []byte("not DER")}}}
		runAPICases(t, sg, sp, []apiCase{
			{name: "BatchCreateFederatedBundle per-item status", call: func(ctx context.Context, b *backend) (any, error) {
				r, err := bundleClient(b).BatchCreateFederatedBundle(ctx, &bundlev1.BatchCreateFederatedBundleRequest{
					Bundle: []*types.Bundle{fedA, fedA, {TrustDomain: td.Name(), X509Authorities: fedA.X509Authorities}, {TrustDomain: "Bad Name"}, bad, fedB},
				})
				if err != nil {
					return nil, err
				}
				return codesOf(r.Results), nil
			}},
			{name: "BatchCreateFederatedBundle result", call: func(ctx context.Context, b *backend) (any, error) {
				return bundleClient(b).BatchCreateFederatedBundle(ctx, &bundlev1.BatchCreateFederatedBundleRequest{
					Bundle: []*types.Bundle{federatedBundle(t, "d.example")}, OutputMask: &types.BundleMask{RefreshHint: true},
				})
			}},
			{name: "BatchUpdateFederatedBundle per-item status", call: func(ctx context.Context, b *backend) (any, error) {
				upd := proto.Clone(fedA).(*types.Bundle)
				upd.RefreshHint = 120
				r, err := bundleClient(b).BatchUpdateFederatedBundle(ctx, &bundlev1.BatchUpdateFederatedBundleRequest{
					Bundle: []*types.Bundle{upd, {TrustDomain: "nope.example", X509Authorities: fedA.X509Authorities}, {TrustDomain: td.Name(), X509Authorities: fedA.X509Authorities}},
				})
				if err != nil {
					return nil, err
				}
				return codesOf(r.Results), nil
			}},
			{name: "BatchUpdateFederatedBundle input mask", call: func(ctx context.Context, b *backend) (any, error) {
				_, err := bundleClient(b).BatchUpdateFederatedBundle(ctx, &bundlev1.BatchUpdateFederatedBundleRequest{
					Bundle:    []*types.Bundle{{TrustDomain: "a.example", RefreshHint: 999, SequenceNumber: 42}},
					InputMask: &types.BundleMask{RefreshHint: true},
				})
				if err != nil {
					return nil, err
				}
				return bundleClient(b).GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: "a.example", OutputMask: &types.BundleMask{RefreshHint: true, SequenceNumber: true}})
			}},
			{name: "BatchSetFederatedBundle per-item status", call: func(ctx context.Context, b *backend) (any, error) {
				r, err := bundleClient(b).BatchSetFederatedBundle(ctx, &bundlev1.BatchSetFederatedBundleRequest{
					Bundle: []*types.Bundle{fedB, federatedBundle(t, "e.example"), {TrustDomain: td.Name(), X509Authorities: fedA.X509Authorities}, bad},
				})
				if err != nil {
					return nil, err
				}
				return codesOf(r.Results), nil
			}},
			{name: "GetFederatedBundle", call: func(ctx context.Context, b *backend) (any, error) {
				return bundleClient(b).GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: "b.example"})
			}},
			{name: "GetFederatedBundle output mask", call: func(ctx context.Context, b *backend) (any, error) {
				return bundleClient(b).GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: "b.example", OutputMask: &types.BundleMask{JwtAuthorities: true}})
			}},
			{name: "GetFederatedBundle unknown", call: func(ctx context.Context, b *backend) (any, error) {
				return bundleClient(b).GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: "nope.example"})
			}},
			{name: "GetFederatedBundle own trust domain", call: func(ctx context.Context, b *backend) (any, error) {
				return bundleClient(b).GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: td.Name()})
			}},
			{name: "GetFederatedBundle invalid name", call: func(ctx context.Context, b *backend) (any, error) {
				return bundleClient(b).GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: "Bad Name"})
			}},
			{name: "GetBundle output mask", call: func(ctx context.Context, b *backend) (any, error) {
				return bundleClient(b).GetBundle(ctx, &bundlev1.GetBundleRequest{OutputMask: &types.BundleMask{}})
			}},
			{name: "CountBundles", call: func(ctx context.Context, b *backend) (any, error) {
				return bundleClient(b).CountBundles(ctx, &bundlev1.CountBundlesRequest{})
			}},
			{name: "ListFederatedBundles", call: func(ctx context.Context, b *backend) (any, error) {
				return bundleClient(b).ListFederatedBundles(ctx, &bundlev1.ListFederatedBundlesRequest{OutputMask: &types.BundleMask{SequenceNumber: true}})
			}},
			{name: "ListFederatedBundles pagination", call: func(ctx context.Context, b *backend) (any, error) {
				return pages(2, func(token string) ([]string, string, error) {
					r, err := bundleClient(b).ListFederatedBundles(ctx, &bundlev1.ListFederatedBundlesRequest{PageSize: 2, PageToken: token, OutputMask: &types.BundleMask{}})
					if err != nil {
						return nil, "", err
					}
					var names []string
					for _, x := range r.Bundles {
						names = append(names, x.TrustDomain)
					}
					return names, r.NextPageToken, nil
				})
			}},
			{name: "ListFederatedBundles negative page_size", call: func(ctx context.Context, b *backend) (any, error) {
				r, err := bundleClient(b).ListFederatedBundles(ctx, &bundlev1.ListFederatedBundlesRequest{PageSize: -1, OutputMask: &types.BundleMask{}})
				return map[string]int{"bundles": len(r.GetBundles())}, err
			}},
			{name: "ListFederatedBundles bad page_token", call: func(ctx context.Context, b *backend) (any, error) {
				r, err := bundleClient(b).ListFederatedBundles(ctx, &bundlev1.ListFederatedBundlesRequest{PageSize: 2, PageToken: "not-a-token", OutputMask: &types.BundleMask{}})
				return map[string]int{"bundles": len(r.GetBundles())}, err
			},
				deviation:  "SPIRE fails a malformed page token with Internal; Signet's store reads it as a position and lists from there",
				expectDiff: []string{`.code: "OK" vs "Internal"`, `.response: {"bundles":0} vs null`}},
			{name: "BatchDeleteFederatedBundle per-item status", call: func(ctx context.Context, b *backend) (any, error) {
				r, err := bundleClient(b).BatchDeleteFederatedBundle(ctx, &bundlev1.BatchDeleteFederatedBundleRequest{
					TrustDomains: []string{"e.example", "e.example", "nope.example", td.Name(), "Bad Name"},
				})
				if err != nil {
					return nil, err
				}
				return r, nil
			}},
			{name: "AppendBundle", call: func(ctx context.Context, b *backend) (any, error) {
				_, err := bundleClient(b).AppendBundle(ctx, &bundlev1.AppendBundleRequest{X509Authorities: fedA.X509Authorities, OutputMask: &types.BundleMask{}})
				return &types.Bundle{}, err
			},
				deviation:  "Signet manages its own authorities; appending to the local bundle (used by downstream SPIRE servers) is not supported",
				expectDiff: []string{`.code: "Unimplemented" vs "OK"`, `.response: null vs {"jwt_authorities":[],"refresh_hint":"0","sequence_number":"0","trust_domain":"","x509_authorities":[]}`}},
		})
	})

	t.Run("Entry", func(t *testing.T) {
		parent := agentID("tok-1-0123456789")
		valid := func() *types.Entry {
			return &types.Entry{ParentId: parent, SpiffeId: &types.SPIFFEID{TrustDomain: td.Name(), Path: "/w"}, Selectors: []*types.Selector{{Type: "unix", Value: "uid:1"}}}
		}
		with := func(f func(e *types.Entry)) *types.Entry { e := valid(); f(e); return e }
		runAPICases(t, sg, sp, []apiCase{
			{name: "BatchCreateEntry per-item status", call: func(ctx context.Context, b *backend) (any, error) {
				r, err := entryClient(b).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{
					with(func(e *types.Entry) { e.Id = "w-1" }),
					with(func(e *types.Entry) { e.Id = "w-2" }), // similar to w-1
					with(func(e *types.Entry) { e.Id = "w-1"; e.SpiffeId.Path = "/w2" }),
					with(func(e *types.Entry) { e.SpiffeId = uniq(e.SpiffeId, 4); e.SpiffeId = nil }),
					with(func(e *types.Entry) { e.SpiffeId = uniq(e.SpiffeId, 5); e.SpiffeId.TrustDomain = "other.org" }),
					with(func(e *types.Entry) { e.SpiffeId = uniq(e.SpiffeId, 6); e.SpiffeId.Path = "w" }),
					with(func(e *types.Entry) { e.SpiffeId = uniq(e.SpiffeId, 7); e.ParentId = nil }),
					with(func(e *types.Entry) { e.SpiffeId = uniq(e.SpiffeId, 8); e.Selectors = nil }),
					with(func(e *types.Entry) {
						e.SpiffeId = uniq(e.SpiffeId, 9)
						e.Selectors = []*types.Selector{{Type: "unix"}}
					}),
					with(func(e *types.Entry) { e.SpiffeId = uniq(e.SpiffeId, 10); e.X509SvidTtl = -1 }),
					with(func(e *types.Entry) { e.SpiffeId = uniq(e.SpiffeId, 11); e.JwtSvidTtl = -1 }),
					with(func(e *types.Entry) {
						e.SpiffeId = uniq(e.SpiffeId, 12)
						e.Id = "w-dns"
						e.DnsNames = []string{"under_score.example"}
					}),
					with(func(e *types.Entry) { e.SpiffeId = uniq(e.SpiffeId, 21); e.DnsNames = []string{"-lead.example"} }),
					with(func(e *types.Entry) { e.SpiffeId = uniq(e.SpiffeId, 22); e.DnsNames = []string{"a..example"} }),
					with(func(e *types.Entry) { e.SpiffeId = uniq(e.SpiffeId, 23); e.DnsNames = []string{"*.*.example"} }),
					with(func(e *types.Entry) { e.SpiffeId = uniq(e.SpiffeId, 24); e.DnsNames = []string{"a.*.example"} }),
					with(func(e *types.Entry) { e.SpiffeId = uniq(e.SpiffeId, 25); e.DnsNames = []string{"x.example."} }),
					with(func(e *types.Entry) {
						e.SpiffeId = uniq(e.SpiffeId, 26)
						e.Id = "w-wild"
						e.DnsNames = []string{"*.wild.example"}
					}),
					with(func(e *types.Entry) { e.SpiffeId = uniq(e.SpiffeId, 13); e.Hint = strings.Repeat("x", 1025) }),
					with(func(e *types.Entry) { e.SpiffeId = uniq(e.SpiffeId, 14); e.Id = "a/b" }),
					with(func(e *types.Entry) {
						e.SpiffeId = uniq(e.SpiffeId, 15)
						e.StoreSvid = true
						e.Selectors = append(e.Selectors, &types.Selector{Type: "k8s", Value: "ns:x"})
					}),
					with(func(e *types.Entry) {
						e.SpiffeId = uniq(e.SpiffeId, 16)
						e.SpiffeId.Path = "/w3"
						e.FederatesWith = []string{"Bad Name"}
					}),
				}})
				if err != nil {
					return nil, err
				}
				return codesOf(r.Results), nil
			}},
			{name: "BatchUpdateEntry per-item status", call: func(ctx context.Context, b *backend) (any, error) {
				r, err := entryClient(b).BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{
					Entries: []*types.Entry{
						{Id: "w-1", Hint: "h"},
						{Id: "nope", Hint: "h"},
						{Hint: "h"},
						{Id: "w-1", X509SvidTtl: -1},
					},
					InputMask: &types.EntryMask{Hint: true, X509SvidTtl: true},
				})
				if err != nil {
					return nil, err
				}
				return codesOf(r.Results), nil
			}},
			{name: "BatchDeleteEntry per-item status", call: func(ctx context.Context, b *backend) (any, error) {
				r, err := entryClient(b).BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: []string{"w-1", "w-1", "", "nope"}})
				if err != nil {
					return nil, err
				}
				return r, nil
			}},
			{name: "ListEntries pagination", call: func(ctx context.Context, b *backend) (any, error) {
				for i := 0; i < 5; i++ {
					r, err := entryClient(b).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{
						with(func(e *types.Entry) { e.Id = fmt.Sprintf("p-%d", i); e.SpiffeId.Path = fmt.Sprintf("/p/%d", i) }),
					}})
					if err != nil {
						return nil, err
					}
					if c := codes.Code(r.Results[0].Status.Code); c != codes.OK {
						return nil, status.Error(c, r.Results[0].Status.Message)
					}
				}
				return pages(2, func(token string) ([]string, string, error) {
					r, err := entryClient(b).ListEntries(ctx, &entryv1.ListEntriesRequest{PageSize: 2, PageToken: token, OutputMask: &types.EntryMask{}})
					if err != nil {
						return nil, "", err
					}
					var ids []string
					for _, e := range r.Entries {
						ids = append(ids, e.Id)
					}
					return ids, r.NextPageToken, nil
				})
			}},
			{name: "ListEntries negative page_size", call: func(ctx context.Context, b *backend) (any, error) {
				r, err := entryClient(b).ListEntries(ctx, &entryv1.ListEntriesRequest{PageSize: -1, OutputMask: &types.EntryMask{}})
				return map[string]int{"entries": len(r.GetEntries())}, err
			}},
			{name: "ListEntries bad page_token", call: func(ctx context.Context, b *backend) (any, error) {
				r, err := entryClient(b).ListEntries(ctx, &entryv1.ListEntriesRequest{PageSize: 2, PageToken: "not-a-token", OutputMask: &types.EntryMask{}})
				return map[string]int{"entries": len(r.GetEntries())}, err
			},
				deviation:  "SPIRE fails a malformed page token with Internal; Signet's store reads it as a position and lists from there",
				expectDiff: []string{`.code: "OK" vs "Internal"`, `.response: {"entries":2} vs null`}},
			{name: "GetEntry unknown", call: func(ctx context.Context, b *backend) (any, error) {
				return entryClient(b).GetEntry(ctx, &entryv1.GetEntryRequest{Id: "nope"})
			}},
			{name: "GetEntry no id", call: func(ctx context.Context, b *backend) (any, error) {
				return entryClient(b).GetEntry(ctx, &entryv1.GetEntryRequest{})
			}},
			{name: "BatchCreateEntry DNS name with a space", call: func(ctx context.Context, b *backend) (any, error) {
				r, err := entryClient(b).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{
					with(func(e *types.Entry) {
						e.SpiffeId = uniq(e.SpiffeId, 20)
						e.Id = "w-space"
						e.DnsNames = []string{"bad name.example"}
					}),
				}})
				if err != nil {
					return nil, err
				}
				return codesOf(r.Results), nil
			},
				deviation:  "SPIRE accepts a DNS name containing a space; Signet refuses it (it is not a valid DNS name)",
				expectDiff: []string{`.response: "0:InvalidArgument" vs "0:OK"`}},
			{name: "GetAuthorizedEntries as admin", call: func(ctx context.Context, b *backend) (any, error) {
				return entryClient(b).GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{})
			}},
		})
	})
}
