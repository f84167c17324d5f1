package gcpiit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/gcpiit"
	"github.com/signet-id/signet/attest/gcpiit/gcpiittest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		d    gcpiit.ServerPluginData
		msg  string
	}{
		{"no allow list", gcpiit.ServerPluginData{}, "projectid_allow_list is required"},
		{"instance metadata", gcpiit.ServerPluginData{ProjectIDAllowList: []string{"p"}, UseInstanceMetadata: true}, "use_instance_metadata is not supported"},
		{"bad template", gcpiit.ServerPluginData{ProjectIDAllowList: []string{"p"}, AgentPathTemplate: "{{"}, "agent_path_template"},
		{"bad certs URL", gcpiit.ServerPluginData{ProjectIDAllowList: []string{"p"}, CertsURL: "file:///etc/passwd"}, "not an http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := gcpiit.ConfigFromPluginData(td, tt.d)
			if err == nil {
				_, err = gcpiit.NewAttestor(cfg)
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err %v, want %q", err, tt.msg)
			}
		})
	}
	if _, err := gcpiit.NewEvidence(gcpiit.AgentPluginData{IdentityTokenHost: "evil/x?"}, nil); err == nil {
		t.Fatal("a host with a path was accepted")
	}
}

// TestTemplateAndClock: SPIRE's template fields, and the injected clock
// decides expiry.
func TestTemplateAndClock(t *testing.T) {
	g := gcpiittest.NewGoogle(t, "k")
	var now atomic.Int64
	now.Store(time.Now().Unix())
	clk := func() time.Time { return time.Unix(now.Load(), 0) }
	a, err := gcpiit.NewAttestor(gcpiit.Config{TrustDomain: td, ProjectIDs: []string{"p"}, CertsURL: g.CertsURL, Now: clk,
		AgentPathTemplate: "/{{ .PluginName }}/{{ .Zone }}/{{ .InstanceName }}/{{ .ProjectNumber }}"})
	if err != nil {
		t.Fatal(err)
	}
	tok := g.Sign(t, gcpiittest.Claims(gcpiittest.Instance("p", "z1", "n1", "1"), gcpiit.Audience, clk()))
	res, err := a.Attest(context.Background(), attest.NodeRequest{Payload: []byte(tok)})
	if err != nil || res.AgentID.String() != "spiffe://example.org/spire/agent/gcp_iit/z1/n1/424242" {
		t.Fatalf("%v %v", res.AgentID, err)
	}
	now.Add(2 * 3600)
	if _, err := a.Attest(context.Background(), attest.NodeRequest{Payload: []byte(tok)}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("two hours later: %v, want PermissionDenied", err)
	}
}

// TestCertsCaching: the certificates are fetched again only after the
// Expires time Google sends; an unreachable certs URL is Unavailable.
func TestCertsCaching(t *testing.T) {
	g := gcpiittest.NewGoogle(t, "k")
	var fetches atomic.Int32
	var expires atomic.Value
	expires.Store("")
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		resp, err := http.Get(g.CertsURL)
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		if e := expires.Load().(string); e != "" {
			w.Header().Set("Expires", e)
		}
		buf := make([]byte, 64<<10)
		n, _ := resp.Body.Read(buf)
		_, _ = w.Write(buf[:n])
	}))
	defer proxy.Close()
	base := time.Now()
	a, err := gcpiit.NewAttestor(gcpiit.Config{TrustDomain: td, ProjectIDs: []string{"p"}, CertsURL: proxy.URL, Now: func() time.Time { return base }})
	if err != nil {
		t.Fatal(err)
	}
	attestOnce := func() {
		t.Helper()
		tok := g.Sign(t, gcpiittest.Claims(gcpiittest.Instance("p", "z", "n", "1"), gcpiit.Audience, base))
		if _, err := a.Attest(context.Background(), attest.NodeRequest{Payload: []byte(tok)}); err != nil {
			t.Fatal(err)
		}
	}
	attestOnce()
	attestOnce()
	if n := fetches.Load(); n != 2 {
		t.Fatalf("%d fetches without Expires, want 2 (one per attestation, as SPIRE)", n)
	}
	expires.Store(base.Add(time.Hour).UTC().Format(http.TimeFormat))
	attestOnce()
	attestOnce()
	if n := fetches.Load(); n != 3 {
		t.Fatalf("%d fetches with Expires in an hour, want 3", n)
	}
	proxy.Close()
	down, _ := gcpiit.NewAttestor(gcpiit.Config{TrustDomain: td, ProjectIDs: []string{"p"}, CertsURL: proxy.URL})
	tok := g.Sign(t, gcpiittest.Claims(gcpiittest.Instance("p", "z", "n", "1"), gcpiit.Audience, time.Now()))
	if _, err := down.Attest(context.Background(), attest.NodeRequest{Payload: []byte(tok)}); status.Code(err) != codes.Unavailable {
		t.Fatalf("certs URL down: %v, want Unavailable", err)
	}
}

// TestAgentAsksAsSPIRE: the metadata server stand-in answers only SPIRE's
// request (header, path, audience, format=full).
func TestAgentAsksAsSPIRE(t *testing.T) {
	g := gcpiittest.NewGoogle(t, "k")
	host := gcpiittest.NewMetadata(t, g, gcpiittest.Instance("p", "z", "n", "1"), time.Now)
	ev, _ := gcpiit.NewEvidence(gcpiit.AgentPluginData{IdentityTokenHost: host}, nil)
	if _, err := ev.Payload(context.Background()); err != nil {
		t.Fatal(err)
	}
	other, _ := gcpiit.NewEvidence(gcpiit.AgentPluginData{IdentityTokenHost: host, ServiceAccount: "robot@p.iam.gserviceaccount.com"}, nil)
	if _, err := other.Payload(context.Background()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("another service account: %v, want the stand-in's 404", err)
	}
	if _, err := ev.Respond(context.Background(), nil); err == nil {
		t.Fatal("a challenge was answered")
	}
}
