package spire

import (
	"context"
	"crypto/x509"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/ca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
)

// checkJWT fetches a JWT-SVID over the Workload API at socket, validates
// it through the same agent and against the JWT bundle it serves.
func checkJWT(t *testing.T, ctx context.Context, socket string, want spiffeid.ID) {
	t.Helper()
	addr := workloadapi.WithAddr("unix://" + socket)
	svid, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"}, addr)
	if err != nil {
		t.Fatalf("FetchJWTSVID: %v", err)
	}
	if svid.ID != want || len(svid.Audience) != 1 || svid.Audience[0] != "db" {
		t.Fatalf("JWT-SVID %v for %v", svid.ID, svid.Audience)
	}
	v, err := workloadapi.ValidateJWTSVID(ctx, svid.Marshal(), "db", addr)
	if err != nil {
		t.Fatalf("ValidateJWTSVID: %v", err)
	}
	if v.ID != want {
		t.Fatalf("validated ID %v", v.ID)
	}
	bundles, err := workloadapi.FetchJWTBundles(ctx, addr)
	if err != nil {
		t.Fatalf("FetchJWTBundles: %v", err)
	}
	if _, err := jwtsvid.ParseAndValidate(svid.Marshal(), bundles, []string{"db"}); err != nil {
		t.Fatalf("JWT-SVID does not validate against the served JWT bundle: %v", err)
	}
}

// handshakes returns the agent listener's TLS handshakes by key exchange
// group.
func handshakes(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "signet_server_tls_handshakes_total" {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "group" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

func protoID(id spiffeid.ID) *types.SPIFFEID {
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
}

func uidSelector() *types.Selector {
	return &types.Selector{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())}
}

// activeCA returns the Signet server's active X.509 authority.
func activeCA(s *signetServer) *x509.Certificate {
	for _, slot := range s.CA().X509Slots() {
		if slot.Status == ca.StatusActive {
			return slot.Cert
		}
	}
	return nil
}

func preparedCA(s *signetServer) *x509.Certificate {
	for _, slot := range s.CA().X509Slots() {
		if slot.Status == ca.StatusPrepared {
			return slot.Cert
		}
	}
	return nil
}

func hasAuthority(auths []*x509.Certificate, c *x509.Certificate) bool {
	for _, a := range auths {
		if a.Equal(c) {
			return true
		}
	}
	return false
}

// TestSPIREAgentToSignetServer runs a real spire-agent v1.13.3 against a
// Signet server: join-token attestation, entry sync, SVIDs served over the
// spire-agent's Workload API to go-spiffe, a CA rotation on Signet reaching
// the workload, and an entry change re-issuing the SVID.
//
// The CA rotation is driven by the server's injected clock: the server
// starts 55 minutes in the past with a 1h CA TTL; moving the clock to 15
// minutes in the past crosses the half-life (a new authority is prepared and
// published), and moving it to real time crosses five sixths of the lifetime
// (the prepared authority becomes active). Certificates stay valid in real
// time throughout because they are only ever issued with past NotBefore.
func TestSPIREAgentToSignetServer(t *testing.T) {
	bins := spireBinaries(t)
	clk := &clock{}
	clk.Set(-55 * time.Minute)
	reg := prometheus.NewRegistry()
	srv := startSignet(t, signetOptions{now: clk.Now, caTTL: time.Hour, registry: reg})
	token := srv.token(t)
	agentID := spiffeid.RequireFromSegments(td, "spire", "agent", "join_token", token)
	me := spiffeid.RequireFromPath(td, "/workload/spire-agent")
	entry := srv.createEntry(t, &types.Entry{SpiffeId: protoID(me), ParentId: protoID(agentID), Selectors: []*types.Selector{uidSelector()}})

	dir := shortDir(t)
	socket := startSPIREAgent(t, bins.agent, srv, dir, "spire-agent.conf.tmpl", map[string]any{"JoinToken": token})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+socket)))
	if err != nil {
		t.Fatalf("NewX509Source on spire-agent: %v", err)
	}
	defer src.Close()

	t.Run("attest and serve SVID", func(t *testing.T) {
		svid, err := src.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		if svid.ID != me {
			t.Fatalf("SVID ID %v, want %v", svid.ID, me)
		}
		b, err := src.GetX509BundleForTrustDomain(td)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := x509svid.Verify(svid.Certificates, b); err != nil {
			t.Fatalf("chain does not verify against the workload bundle: %v", err)
		}
		if _, _, err := x509svid.Verify(svid.Certificates, srv.CA().Bundle()); err != nil {
			t.Fatalf("chain does not verify against Signet's bundle: %v", err)
		}
		if !hasAuthority(b.X509Authorities(), activeCA(srv)) {
			t.Fatal("workload bundle lacks Signet's active authority")
		}
		// The agent is recorded as attested through the join token.
		a, err := srv.agentRecord(agentID)
		if err != nil {
			t.Fatal(err)
		}
		if a.AttestationType != "join_token" || a.Banned {
			t.Fatalf("agent record %+v", a)
		}
		// spire-agent negotiated the post-quantum hybrid key exchange that
		// Signet requires by default, and nothing else.
		groups := handshakes(t, reg)
		if groups["X25519MLKEM768"] == 0 || len(groups) != 1 {
			t.Fatalf("TLS key exchange groups negotiated with spire-agent: %v, want only X25519MLKEM768", groups)
		}
	})
	firstSerial := func() string {
		a, err := srv.agentRecord(agentID)
		if err != nil {
			t.Fatal(err)
		}
		return a.X509SvidSerialNumber
	}()

	oldCA := activeCA(srv)
	t.Run("CA rotation prepared authority reaches workload bundle", func(t *testing.T) {
		clk.Set(-15 * time.Minute)
		var next *x509.Certificate
		waitFor(t, 30*time.Second, "Signet to prepare the next authority", func() bool {
			next = preparedCA(srv)
			return next != nil
		})
		waitFor(t, 60*time.Second, "prepared authority in the workload's bundle", func() bool {
			b, err := src.GetX509BundleForTrustDomain(td)
			return err == nil && hasAuthority(b.X509Authorities(), next) && hasAuthority(b.X509Authorities(), oldCA)
		})
	})
	t.Run("CA rotation SVID from new authority reaches workload", func(t *testing.T) {
		clk.Set(0)
		var cur *x509.Certificate
		waitFor(t, 30*time.Second, "Signet to activate the next authority", func() bool {
			cur = activeCA(srv)
			return cur != nil && !cur.Equal(oldCA)
		})
		waitFor(t, 60*time.Second, "workload SVID signed by the new authority", func() bool {
			svid, err := src.GetX509SVID()
			if err != nil {
				return false
			}
			chain := svid.Certificates
			return chain[len(chain)-1].CheckSignatureFrom(cur) == nil
		})
		svid, _ := src.GetX509SVID()
		b, _ := src.GetX509BundleForTrustDomain(td)
		if _, _, err := x509svid.Verify(svid.Certificates, b); err != nil {
			t.Fatalf("rotated chain does not verify against the workload bundle: %v", err)
		}
		if svid.ID != me {
			t.Fatalf("rotated SVID ID %v", svid.ID)
		}
	})

	// JWT-SVIDs live minutes: checked once the server clock is real time.
	t.Run("JWT-SVID minted and validated", func(t *testing.T) {
		checkJWT(t, ctx, socket, me)
	})

	t.Run("forced CA rotation and taint reach workload", func(t *testing.T) {
		// An operator-driven rotation (prepare, then activate) on the
		// CA manager, outside the schedule.
		prev := activeCA(srv)
		info, err := srv.CA().PrepareX509()
		if err != nil {
			t.Fatal(err)
		}
		next := preparedCA(srv)
		waitFor(t, 60*time.Second, "forcibly prepared authority in the workload's bundle", func() bool {
			b, err := src.GetX509BundleForTrustDomain(td)
			return err == nil && hasAuthority(b.X509Authorities(), next)
		})
		if _, err := srv.CA().ActivateX509(info.ID); err != nil {
			t.Fatal(err)
		}
		// Activation alone does not make agents re-issue (SPIRE renews at
		// half-life); tainting the previous authority does: the bundle marks
		// it tainted and spire-agent replaces every SVID it signed.
		if _, err := srv.CA().TaintX509(ca.X509AuthorityID(prev)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "workload SVID signed by the forcibly activated authority", func() bool {
			svid, err := src.GetX509SVID()
			if err != nil {
				return false
			}
			chain := svid.Certificates
			return chain[len(chain)-1].CheckSignatureFrom(next) == nil
		})
		b, _ := src.GetX509BundleForTrustDomain(td)
		if !hasAuthority(b.X509Authorities(), prev) {
			t.Fatal("previous authority left the workload bundle before it expired")
		}
	})

	t.Run("agent SVID renewed", func(t *testing.T) {
		// spire-agent renews its own SVID (RenewAgent) past half-life; the
		// server records the new serial and keeps accepting the agent.
		waitFor(t, 60*time.Second, "a renewed agent SVID", func() bool {
			a, err := srv.agentRecord(agentID)
			return err == nil && a.X509SvidSerialNumber != firstSerial && !a.Banned
		})
	})

	t.Run("entry update re-issues SVID", func(t *testing.T) {
		before, err := src.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := entryv1.NewEntryClient(srv.admin).BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{
			Entries:   []*types.Entry{{Id: entry.Id, X509SvidTtl: 1200, DnsNames: []string{"db.example.org"}}},
			InputMask: &types.EntryMask{X509SvidTtl: true, DnsNames: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		if c := codes.Code(resp.Results[0].Status.Code); c != codes.OK {
			t.Fatalf("update entry: %v %s", c, resp.Results[0].Status.Message)
		}
		waitFor(t, 60*time.Second, "re-issued SVID with the entry's DNS name and TTL", func() bool {
			s, err := src.GetX509SVID()
			if err != nil || s.Certificates[0].SerialNumber.Cmp(before.Certificates[0].SerialNumber) == 0 {
				return false
			}
			leaf := s.Certificates[0]
			life := leaf.NotAfter.Sub(leaf.NotBefore)
			return len(leaf.DNSNames) == 1 && leaf.DNSNames[0] == "db.example.org" && life <= 1200*time.Second+time.Minute
		})
	})
}
