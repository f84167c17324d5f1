package kubetest_test

import (
	"testing"
	"time"

	"github.com/signet-id/signet/conformance/kubetest"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestClusterIssuesPodBoundTokens: the harness's cluster issues a
// pod-bound token that its TokenReview API authenticates (with the pod in
// the user's extra), refuses it for another audience, and refuses one the
// harness signs with an expiry in the past.
func TestClusterIssuesPodBoundTokens(t *testing.T) {
	c := kubetest.Start(t)
	a := c.NewAgent(t, kubetest.AgentSpec{NodeLabels: map[string]string{"zone": "a"}})

	claims := kubetest.Claims(t, a.Token)
	if claims["iss"] != kubetest.DefaultIssuer || claims["sub"] != "system:serviceaccount:spire:spire-agent" {
		t.Fatalf("claims: %v", claims)
	}
	review := func(token string, aud ...string) authenticationv1.TokenReviewStatus {
		t.Helper()
		r, err := c.Client.AuthenticationV1().TokenReviews().Create(t.Context(), &authenticationv1.TokenReview{
			Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: aud},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	st := review(a.Token, "spire-server")
	if !st.Authenticated || st.User.Username != "system:serviceaccount:spire:spire-agent" {
		t.Fatalf("review: %+v", st)
	}
	if got := st.User.Extra["authentication.kubernetes.io/pod-uid"]; len(got) != 1 || got[0] != string(a.Pod.UID) {
		t.Fatalf("pod uid in review: %v, want %s", got, a.Pod.UID)
	}
	if st := review(a.Token, "other"); st.Authenticated || st.Error == "" {
		t.Fatalf("review for another audience: %+v", st)
	}
	past := time.Now().Add(-time.Hour).Unix()
	claims["iat"], claims["nbf"], claims["exp"] = past-600, past-600, past
	if st := review(c.SignToken(t, claims), "spire-server"); st.Authenticated || st.Error == "" {
		t.Fatalf("review of an expired token: %+v", st)
	}
	// The same claims, re-signed in date, authenticate: the harness signs
	// as kube-apiserver does.
	now := time.Now().Unix()
	claims["iat"], claims["nbf"], claims["exp"] = now, now, now+600
	if st := review(c.SignToken(t, claims), "spire-server"); !st.Authenticated {
		t.Fatalf("review of a re-signed token: %+v", st)
	}
}
