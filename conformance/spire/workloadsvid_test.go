package spire

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// workloadSVID fetches the X509-SVID the Workload API at socket serves
// (waiting up to 90 s for the agent to sync its entry), checks that its ID
// is want and that it verifies against bundle alone; what names the agent
// and the bundle in failures.
func workloadSVID(t *testing.T, socket string, want spiffeid.ID, bundle x509bundle.Source, what string) *x509svid.SVID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+socket)))
	if err != nil {
		t.Fatalf("X509Source on %s: %v", what, err)
	}
	defer src.Close()
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID != want {
		t.Fatalf("SVID ID %v, want %v", svid.ID, want)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
		t.Fatalf("the SVID from %s does not verify: %v", what, err)
	}
	return svid
}
