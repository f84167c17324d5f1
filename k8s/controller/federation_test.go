package controller_test

import (
	"testing"
	"time"

	"github.com/signet-id/signet/k8s/controller"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apitypes "k8s.io/apimachinery/pkg/types"
)

// TestFederatedTrustDomains: a ClusterFederatedTrustDomain becomes a
// federation relationship through the server's TrustDomain API; a change
// of its endpoint updates it; deleting the object deletes it, and a
// relationship made by hand stays.
func TestFederatedTrustDomains(t *testing.T) {
	e := newEnv(t)
	tdc := trustdomainv1.NewTrustDomainClient(e.conn)
	_, probe := tdc.ListFederationRelationships(ctxT(t), &trustdomainv1.ListFederationRelationshipsRequest{})
	e.apply(t, controller.ClusterFederatedTrustDomainResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterFederatedTrustDomain
metadata: {name: other}
spec:
  trustDomain: other.org
  bundleEndpointURL: https://127.0.0.1:8443
  bundleEndpointProfile: {type: https_web}
`)
	e.start(t, nil)
	if probe != nil {
		t.Fatal(probe)
	}
	hand, err := tdc.BatchCreateFederationRelationship(ctxT(t), &trustdomainv1.BatchCreateFederationRelationshipRequest{
		FederationRelationships: []*types.FederationRelationship{{TrustDomain: "by-hand.org", BundleEndpointUrl: "https://127.0.0.1:9443",
			BundleEndpointProfile: &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}}},
	})
	if err != nil || codes.Code(hand.Results[0].Status.Code) != codes.OK {
		t.Fatalf("hand-made relationship: %v %v", hand, err)
	}
	get := func(td string) *types.FederationRelationship {
		fr, err := tdc.GetFederationRelationship(ctxT(t), &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: td})
		if err != nil {
			return nil
		}
		return fr
	}
	eventually(t, "the relationship", func() bool { return get("other.org") != nil })
	patch := `{"spec":{"bundleEndpointURL":"https://127.0.0.1:8444"}}`
	if _, err := e.dyn.Resource(controller.ClusterFederatedTrustDomainResource).Patch(ctxT(t), "other", apitypes.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new endpoint", func() bool { return get("other.org").GetBundleEndpointUrl() == "https://127.0.0.1:8444" })
	if err := e.dyn.Resource(controller.ClusterFederatedTrustDomainResource).Delete(ctxT(t), "other", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the relationship deleted", func() bool { return get("other.org") == nil })
	time.Sleep(2 * time.Second) // two resync passes
	if get("by-hand.org") == nil {
		t.Fatal("the hand-made relationship was deleted")
	}
}
