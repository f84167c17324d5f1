package spire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/server"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

var (
	signetTD = spiffeid.RequireTrustDomainFromString("signet.test")
	spireTD  = spiffeid.RequireTrustDomainFromString("spire.test")
)

// fedRefreshHint is the refresh hint both bundle endpoints publish. SPIRE
// honours at least one minute (its MinimumRefreshHint) and polls at a
// quarter of that; Signet honours the hint (MinRefresh is lowered here).
const fedRefreshHint = 10 * time.Second

// spireEffectiveHint is the refresh interval SPIRE applies to Signet's
// bundle: max(hint, 1m).
const spireEffectiveHint = time.Minute

// federatedPair is a Signet server and a SPIRE server, each with a
// bundle endpoint, federated both ways through the spire-server CLI.
type federatedPair struct {
	bins    binaries
	signet  *signetServer
	spire   *spireServer
	reg     *prometheus.Registry
	spireBE string // SPIRE's bundle endpoint URL
}

func startFederatedPair(t *testing.T) *federatedPair {
	t.Helper()
	bins := spireBinaries(t)
	p := &federatedPair{bins: bins, reg: prometheus.NewRegistry()}
	bePort := freePort(t)
	p.spireBE = fmt.Sprintf("https://127.0.0.1:%d", bePort)
	p.spire = startSPIREServerWith(t, bins, "spire-server-federation.conf.tmpl", map[string]any{
		"TrustDomain": spireTD.Name(), "BundlePort": bePort, "RefreshHint": fedRefreshHint.String(),
	})
	p.signet = startSignet(t, signetOptions{trustDomain: signetTD, registry: p.reg, federation: server.FederationConfig{
		BundleEndpoint: &server.BundleEndpointConfig{Address: "127.0.0.1:0", RefreshHint: fedRefreshHint},
		MinRefresh:     time.Second, Retry: 2 * time.Second, ReloadInterval: time.Second,
	}})
	return p
}

func (p *federatedPair) spireCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cli(context.Background(), p.bins.server, p.spire.socket, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// signetCLI runs the real spire-server CLI against Signet's admin socket.
func (p *federatedPair) signetCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cli(context.Background(), p.bins.server, p.signet.AdminSocket(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeTemp(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// federate creates both relationships with `spire-server federation
// create`, each bootstrapped with the other side's bundle (https_spiffe
// needs it to authenticate the endpoint).
func (p *federatedPair) federate(t *testing.T) {
	t.Helper()
	spireBundle := writeTemp(t, "spire.json", p.spireCLI(t, "bundle", "show", "-format", "spiffe"))
	signetBundle := writeTemp(t, "signet.json", p.signetCLI(t, "bundle", "show", "-format", "spiffe"))
	out := p.signetCLI(t, "federation", "create", "-trustDomain", spireTD.Name(), "-bundleEndpointURL", p.spireBE,
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://spire.test/spire/server",
		"-trustDomainBundlePath", spireBundle, "-trustDomainBundleFormat", "spiffe")
	if !strings.Contains(out, "Trust domain              : spire.test") {
		t.Fatalf("spire-server federation create against Signet printed:\n%s", out)
	}
	p.spireCLI(t, "federation", "create", "-trustDomain", signetTD.Name(), "-bundleEndpointURL", "https://"+p.signet.BundleEndpointAddr().String(),
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://signet.test/spire/server",
		"-trustDomainBundlePath", signetBundle, "-trustDomainBundleFormat", "spiffe")
}

// federatedAuthorities lists the X.509 authorities a server holds for
// another trust domain, read with `spire-server bundle list -id`.
func federatedAuthorities(t *testing.T, bin, socket string, of spiffeid.TrustDomain) []*x509.Certificate {
	t.Helper()
	out, err := cli(context.Background(), bin, socket, "bundle", "list", "-id", of.Name())
	if err != nil {
		return nil
	}
	return parsePEMLenient([]byte(out))
}

func parsePEMLenient(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

// workloads are a Signet workload and a SPIRE workload whose entries
// federate with the other trust domain, each with a go-spiffe X509Source
// on its agent's Workload API.
type workloads struct {
	signetID, spireID   spiffeid.ID
	signetSrc, spireSrc *workloadapi.X509Source
}

func (p *federatedPair) startWorkloads(t *testing.T) *workloads {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	w := &workloads{
		signetID: spiffeid.RequireFromPath(signetTD, "/workload/signet"),
		spireID:  spiffeid.RequireFromPath(spireTD, "/workload/spire"),
	}
	uid := "unix:uid:" + strconv.Itoa(os.Getuid())

	// Signet side: an in-process Signet agent.
	token := p.signet.token(t)
	signetAgent := spiffeid.RequireFromSegments(signetTD, "spire", "agent", "join_token", token)
	p.signet.createEntry(t, &types.Entry{SpiffeId: protoID(w.signetID), ParentId: protoID(signetAgent),
		Selectors: []*types.Selector{uidSelector()}, FederatesWith: []string{spireTD.Name()}})
	dir := shortDir(t)
	logs := &logBuffer{}
	dumpOnFailure(t, "signet agent", logs)
	a, err := agent.New(agent.Config{
		TrustDomain: signetTD, ServerAddresses: []string{p.signet.AgentAddr().String()}, JoinToken: token,
		DataDir: filepath.Join(dir, "agent"), SocketPath: filepath.Join(dir, "wl.sock"),
		TrustBundle: p.signet.CA().Bundle().X509Authorities(),
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry:    prometheus.NewRegistry(), SyncInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	t.Cleanup(func() { acancel(); <-done })
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("signet agent: %v", err)
	}
	if w.signetSrc, err = workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+filepath.Join(dir, "wl.sock")))); err != nil {
		t.Fatalf("X509Source on the Signet agent: %v", err)
	}
	t.Cleanup(func() { w.signetSrc.Close() })

	// SPIRE side: spire-agent, with the entry made by the spire-server CLI.
	var tok struct{ Value string }
	if err := json.Unmarshal([]byte(p.spireCLI(t, "token", "generate", "-ttl", "600", "-output", "json")), &tok); err != nil || tok.Value == "" {
		t.Fatalf("token generate: %v", err)
	}
	spireAgent := spiffeid.RequireFromSegments(spireTD, "spire", "agent", "join_token", tok.Value)
	p.spireCLI(t, "entry", "create", "-parentID", spireAgent.String(), "-spiffeID", w.spireID.String(), "-selector", uid, "-federatesWith", signetTD.Name())
	adir := shortDir(t)
	bundlePEM := writeTemp(t, "spire.pem", p.spireCLI(t, "bundle", "show"))
	socket := startSPIREAgentAt(t, p.bins.agent, p.spire.addr, bundlePEM, spireTD.Name(), adir, "spire-agent.conf.tmpl", map[string]any{"JoinToken": tok.Value})
	if w.spireSrc, err = workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+socket))); err != nil {
		t.Fatalf("X509Source on spire-agent: %v", err)
	}
	t.Cleanup(func() { w.spireSrc.Close() })
	return w
}

// handshake runs a go-spiffe mTLS handshake on loopback: the server
// workload authorizes only the client's SPIFFE ID and the client only the
// server's; it returns the IDs each side saw.
func handshake(t *testing.T, srvSrc *workloadapi.X509Source, srvID spiffeid.ID, cliSrc *workloadapi.X509Source, cliID spiffeid.ID) error {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(srvSrc, srvSrc, tlsconfig.AuthorizeID(cliID)))
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		if err := c.(*tls.Conn).Handshake(); err != nil {
			srvErr <- fmt.Errorf("server side: %w", err)
			return
		}
		_, err = io.WriteString(c, "hello "+cliID.String())
		srvErr <- err
	}()
	conn, err := tls.Dial("tcp", lis.Addr().String(), tlsconfig.MTLSClientConfig(cliSrc, cliSrc, tlsconfig.AuthorizeID(srvID)))
	if err != nil {
		<-srvErr
		return fmt.Errorf("client side: %w", err)
	}
	defer conn.Close()
	msg, err := io.ReadAll(conn)
	if err != nil {
		return fmt.Errorf("client read: %w", err)
	}
	if err := <-srvErr; err != nil {
		return err
	}
	if string(msg) != "hello "+cliID.String() {
		return fmt.Errorf("unexpected message %q", msg)
	}
	return nil
}

// TestFederationWithSPIRE federates a Signet server and a real
// spire-server v1.13.3 both ways, with relationships created by the
// spire-server CLI on each side (against Signet's admin socket for
// Signet): each fetches the other's bundle from its bundle endpoint over
// https_spiffe, a Signet workload and a SPIRE workload complete a
// go-spiffe mTLS handshake in both roles authorizing each other's SPIFFE
// ID, and a CA rotation on either side reaches the other within one
// refresh hint.
func TestFederationWithSPIRE(t *testing.T) {
	p := startFederatedPair(t)
	p.federate(t)

	t.Run("spire-server federation commands against Signet", func(t *testing.T) {
		list := p.signetCLI(t, "federation", "list")
		want := p.spireCLI(t, "federation", "list")
		norm := func(s string) string {
			s = strings.ReplaceAll(s, p.spireBE, "URL")
			s = strings.ReplaceAll(s, "https://"+p.signet.BundleEndpointAddr().String(), "URL")
			return strings.NewReplacer("spire.test", "TD", "signet.test", "TD").Replace(s)
		}
		if norm(list) != norm(want) {
			t.Fatalf("federation list differs (signet vs spire):\n%s\n---\n%s", list, want)
		}
		show := p.signetCLI(t, "federation", "show", "-trustDomain", spireTD.Name())
		if !strings.Contains(show, "Endpoint SPIFFE ID        : spiffe://spire.test/spire/server") {
			t.Fatalf("federation show:\n%s", show)
		}
		if out := p.signetCLI(t, "federation", "refresh", "-id", spireTD.Name()); !strings.Contains(out, "Bundle refreshed") {
			t.Fatalf("federation refresh: %s", out)
		}
		if _, err := cli(context.Background(), p.bins.server, p.signet.AdminSocket(), "federation", "refresh", "-id", "nobody.test"); err == nil || !strings.Contains(err.Error(), `there is no federation relationship with trust domain "nobody.test"`) {
			t.Fatalf("refresh of an unknown trust domain: %v", err)
		}
		if n := len(federatedAuthorities(t, p.bins.server, p.signet.AdminSocket(), spireTD)); n == 0 {
			t.Fatal("spire-server bundle list -id spire.test against Signet shows no authorities")
		}
	})

	w := p.startWorkloads(t)
	waitFor(t, 60*time.Second, "each workload to hold the other trust domain's bundle", func() bool {
		_, e1 := w.signetSrc.GetX509BundleForTrustDomain(spireTD)
		_, e2 := w.spireSrc.GetX509BundleForTrustDomain(signetTD)
		return e1 == nil && e2 == nil
	})

	t.Run("mTLS Signet server, SPIRE client", func(t *testing.T) {
		if err := handshake(t, w.signetSrc, w.signetID, w.spireSrc, w.spireID); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("mTLS SPIRE server, Signet client", func(t *testing.T) {
		if err := handshake(t, w.spireSrc, w.spireID, w.signetSrc, w.signetID); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("mTLS refuses an ID that is not authorized", func(t *testing.T) {
		other := spiffeid.RequireFromPath(spireTD, "/workload/other")
		if err := handshake(t, w.signetSrc, w.signetID, w.spireSrc, other); err == nil {
			t.Fatal("handshake authorized an unexpected SPIFFE ID")
		}
	})

	t.Run("Signet CA rotation reaches SPIRE within one refresh hint", func(t *testing.T) {
		p.signetCLI(t, "localauthority", "x509", "prepare")
		prepared := preparedCA(p.signet)
		if prepared == nil {
			t.Fatal("no prepared authority after localauthority x509 prepare")
		}
		start := time.Now()
		waitFor(t, spireEffectiveHint+10*time.Second, "SPIRE to hold Signet's prepared authority", func() bool {
			return hasAuthority(federatedAuthorities(t, p.bins.server, p.spire.socket, signetTD), prepared)
		})
		t.Logf("Signet's new authority reached spire-server after %v (SPIRE's effective refresh hint %v)", time.Since(start).Round(time.Second), spireEffectiveHint)
		waitFor(t, 30*time.Second, "the SPIRE workload to receive it", func() bool {
			b, err := w.spireSrc.GetX509BundleForTrustDomain(signetTD)
			return err == nil && hasAuthority(b.X509Authorities(), prepared)
		})
	})

	t.Run("SPIRE CA rotation reaches Signet within one refresh hint", func(t *testing.T) {
		before := federatedAuthorities(t, p.bins.server, p.signet.AdminSocket(), spireTD)
		p.spireCLI(t, "localauthority", "x509", "prepare")
		own := parsePEMLenient([]byte(p.spireCLI(t, "bundle", "show")))
		var fresh *x509.Certificate
		for _, c := range own {
			if !hasAuthority(before, c) {
				fresh = c
			}
		}
		if fresh == nil {
			t.Fatal("spire-server bundle has no new authority after localauthority x509 prepare")
		}
		start := time.Now()
		waitFor(t, fedRefreshHint+5*time.Second, "Signet to hold SPIRE's prepared authority", func() bool {
			return hasAuthority(federatedAuthorities(t, p.bins.server, p.signet.AdminSocket(), spireTD), fresh)
		})
		t.Logf("SPIRE's new authority reached Signet after %v (refresh hint %v)", time.Since(start).Round(time.Second), fedRefreshHint)
		waitFor(t, 30*time.Second, "the Signet workload to receive it", func() bool {
			b, err := w.signetSrc.GetX509BundleForTrustDomain(spireTD)
			return err == nil && hasAuthority(b.X509Authorities(), fresh)
		})
		if err := handshake(t, w.spireSrc, w.spireID, w.signetSrc, w.signetID); err != nil {
			t.Fatalf("handshake after both rotations: %v", err)
		}
	})

	t.Run("bad endpoint keeps the last good bundle and says why", func(t *testing.T) {
		good := federatedAuthorities(t, p.bins.server, p.signet.AdminSocket(), spireTD)
		closed := fmt.Sprintf("https://127.0.0.1:%d", freePort(t))
		for _, c := range []struct {
			name, url, endpointID, want string
		}{
			{"wrong endpoint SPIFFE ID", p.spireBE, "spiffe://spire.test/not-the-server", "unexpected ID"},
			{"endpoint unreachable", closed, "spiffe://spire.test/spire/server", "connection refused"},
			{"endpoint of another trust domain", "https://" + p.signet.BundleEndpointAddr().String(), "spiffe://signet.test/spire/server", "belongs to another trust domain"},
		} {
			t.Run(c.name, func(t *testing.T) {
				p.signetCLI(t, "federation", "update", "-trustDomain", spireTD.Name(), "-bundleEndpointURL", c.url,
					"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", c.endpointID)
				_, err := cli(context.Background(), p.bins.server, p.signet.AdminSocket(), "federation", "refresh", "-id", spireTD.Name())
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("refresh: %v; want an error saying %q", err, c.want)
				}
				if got := federatedAuthorities(t, p.bins.server, p.signet.AdminSocket(), spireTD); len(got) != len(good) || !hasAuthority(got, good[0]) {
					t.Fatal("the federated bundle changed after a failed refresh")
				}
			})
		}
		if n := refreshes(t, p.reg, "spire.test", "failure"); n < 3 {
			t.Fatalf("signet_server_federation_refreshes_total{result=failure} = %v, want at least 3", n)
		}
		if _, err := bundlev1.NewBundleClient(p.signet.admin).GetFederatedBundle(context.Background(), &bundlev1.GetFederatedBundleRequest{TrustDomain: spireTD.Name()}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("spire-server federation delete against Signet keeps the bundle", func(t *testing.T) {
		if out := p.signetCLI(t, "federation", "delete", "-id", spireTD.Name()); !strings.Contains(out, "federation relationship deleted.") {
			t.Fatalf("federation delete: %s", out)
		}
		if out := p.signetCLI(t, "federation", "list"); !strings.Contains(out, "Found 0 federation relationships") && !strings.Contains(out, "No federation relationships") {
			t.Fatalf("federation list after delete: %s", out)
		}
		if len(federatedAuthorities(t, p.bins.server, p.signet.AdminSocket(), spireTD)) == 0 {
			t.Fatal("the federated bundle went with the relationship")
		}
	})
}

// refreshes reads signet_server_federation_refreshes_total for a trust
// domain and result.
func refreshes(t *testing.T, reg *prometheus.Registry, trustDomain, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "signet_server_federation_refreshes_total" {
			continue
		}
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["trust_domain"] == trustDomain && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
