package spire

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/server"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
)

// mustCLI runs a spire-server CLI command against s and fails the test
// on error.
func (s *spireServer) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cli(context.Background(), s.bin, s.socket, args...)
	if err != nil {
		t.Fatalf("spire-server %v: %v", args, err)
	}
	return out
}

// joinToken generates a join token on s.
func (s *spireServer) joinToken(t *testing.T) string {
	t.Helper()
	var tok struct{ Value string }
	if err := json.Unmarshal([]byte(s.mustCLI(t, "token", "generate", "-ttl", "600", "-output", "json")), &tok); err != nil || tok.Value == "" {
		t.Fatalf("token generate: %v", err)
	}
	return tok.Value
}

// downstreamSocket starts a Signet agent under s whose Workload API serves
// this process's uid (and the processes it starts) the X509-SVID of a
// downstream entry for id; it returns the socket.
func downstreamSocket(t *testing.T, s *signetServer, id spiffeid.ID) string {
	t.Helper()
	tok := s.token(t)
	agentID := spiffeid.RequireFromSegments(td, "spire", "agent", "join_token", tok)
	s.createEntry(t, &types.Entry{SpiffeId: protoID(id), ParentId: protoID(agentID), Selectors: []*types.Selector{uidSelector()}, Downstream: true})
	return startSignetAgent(t, s, s.AgentAddr().String(), tok, nil)
}

// jwtBundleOf is the JWT half of the Signet server's bundle.
func jwtBundleOf(s *signetServer) *jwtbundle.Bundle {
	return jwtbundle.FromJWTAuthorities(td, s.CA().Bundle().JWTAuthorities())
}

// TestSPIREDownstreamOfSignet nests a real spire-server v1.13.3 under Signet
// (UpstreamAuthority "spire" pointed at Signet, through a downstream entry
// served by a Signet agent): its CA is signed by Signet, the bundle it
// serves is Signet's, an X509-SVID that a spire-agent attested to it hands
// a workload verifies with go-spiffe against Signet's bundle alone, and so
// does its JWT-SVID, SPIRE having published its JWT authority to Signet.
func TestSPIREDownstreamOfSignet(t *testing.T) {
	bins := spireBinaries(t)
	signet := startSignet(t, signetOptions{})
	socket := downstreamSocket(t, signet, spiffeid.RequireFromPath(td, "/nested/spire-server"))
	host, port, _ := net.SplitHostPort(signet.AgentAddr().String())
	sp := startSPIREServerWith(t, bins, "spire-server.conf.tmpl", map[string]any{
		"TrustDomain": td.Name(), "UpstreamHost": host, "UpstreamPort": port, "UpstreamSocket": socket,
	})
	signetBundle := x509bundle.FromX509Authorities(td, signet.CA().Bundle().X509Authorities())
	spireBundlePath := writeTemp(t, "spire.pem", sp.mustCLI(t, "bundle", "show"))
	spireBundle, err := x509bundle.Load(td, spireBundlePath)
	if err != nil {
		t.Fatal(err)
	}
	if !spireBundle.Equal(signetBundle) {
		t.Fatalf("spire-server under Signet serves %d X.509 authorities, not Signet's %d", len(spireBundle.X509Authorities()), len(signetBundle.X509Authorities()))
	}

	tok := sp.joinToken(t)
	agentID := spiffeid.RequireFromSegments(td, "spire", "agent", "join_token", tok)
	me := spiffeid.RequireFromPath(td, "/workload/under-spire")
	sp.mustCLI(t, "entry", "create", "-parentID", agentID.String(), "-spiffeID", me.String(), "-selector", uidSelector().Type+":"+uidSelector().Value)
	wl := startSPIREAgentAt(t, bins.agent, sp.addr, spireBundlePath, td.Name(), shortDir(t), "spire-agent.conf.tmpl", map[string]any{"JoinToken": tok})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	svid := workloadSVID(t, wl, me, signetBundle, "the spire-agent under SPIRE under Signet (against Signet's bundle)")
	// The chain is the leaf and SPIRE's CA, which Signet's (self-signed,
	// root) CA signed.
	if n := len(svid.Certificates); n != 2 {
		t.Fatalf("SPIRE's SVID chain has %d certificates, want the leaf and SPIRE's CA", n)
	}
	if err := svid.Certificates[1].CheckSignatureFrom(activeCA(signet)); err != nil {
		t.Fatalf("SPIRE's CA is not signed by Signet's active CA: %v", err)
	}

	client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+wl))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	jwt, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "signet-test"})
	if err != nil {
		t.Fatalf("JWT-SVID from the spire-agent: %v", err)
	}
	if _, err := jwtsvid.ParseAndValidate(jwt.Marshal(), jwtBundleOf(signet), []string{"signet-test"}); err != nil {
		t.Fatalf("SPIRE's JWT-SVID does not verify against Signet's bundle: %v", err)
	}
}

// switchProxy forwards loopback TCP connections to a target that the test
// can switch; it stops with the test.
type switchProxy struct {
	l      net.Listener
	target atomic.Value // string
	wg     sync.WaitGroup
}

func newSwitchProxy(t *testing.T, target string) *switchProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{l: l}
	p.target.Store(target)
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { l.Close(); p.wg.Wait() })
	return p
}

func (p *switchProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			up, err := net.DialTimeout("tcp", p.target.Load().(string), 5*time.Second)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
			<-done
		}()
	}
}

func (p *switchProxy) hostPort() (string, int) {
	a := p.l.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

// impostorCA signs every downstream CSR with its own root, as an attacker
// posing as the upstream server would.
type impostorCA struct {
	svidv1.UnimplementedSVIDServer
	root *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newImpostorCA(t *testing.T) *impostorCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "impostor root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &impostorCA{root: root, key: key}
}

func (c *impostorCA) NewDownstreamX509CA(_ context.Context, req *svidv1.NewDownstreamX509CARequest) (*svidv1.NewDownstreamX509CAResponse, error) {
	csr, err := x509.ParseCertificateRequest(req.Csr)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), URIs: []*url.URL{td.ID().URL()},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, c.root, csr.PublicKey, c.key)
	if err != nil {
		return nil, err
	}
	return &svidv1.NewDownstreamX509CAResponse{CaCertChain: [][]byte{der}, X509Authorities: [][]byte{c.root.Raw}}, nil
}

// startImpostor serves the SVID API on loopback over mTLS presenting the
// X509-SVID that the Workload API at socket hands out (valid in the trust
// domain, but not the SPIRE server's ID) and signs whatever CSR it gets
// with its own root.
func startImpostor(t *testing.T, socket string) (addr string, id spiffeid.ID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+socket)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(grpccredentials.MTLSServerCredentials(src, src, tlsconfig.AuthorizeAny())))
	svidv1.RegisterSVIDServer(g, newImpostorCA(t))
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	return l.Addr().String(), svid.ID
}

// runSignetUntilRefused runs a Signet server of trust domain tdName under
// the upstream cfg and returns the error it refuses to start with.
func runSignetUntilRefused(t *testing.T, tdName spiffeid.TrustDomain, cfg server.UpstreamSPIREConfig) error {
	t.Helper()
	dir := shortDir(t)
	srv, err := server.New(server.Config{
		TrustDomain: tdName, DataDir: filepath.Join(dir, "server"), BindAddress: "127.0.0.1:0",
		AdminSocket: filepath.Join(dir, "admin.sock"), Logger: slog.New(slog.DiscardHandler),
		UpstreamSPIRE: &cfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err = srv.Run(ctx)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want a refusal to start", err)
	}
	t.Logf("refused: %v", err)
	return err
}

// TestSignetUnderImpostorUpstream: Signet nested under an upstream that
// serves NewDownstreamX509CA (here another Signet server) refuses an
// impostor; see checkImpostorRefused.
func TestSignetUnderImpostorUpstream(t *testing.T) {
	upstream := startSignet(t, signetOptions{})
	socket := downstreamSocket(t, upstream, spiffeid.RequireFromPath(td, "/nested/signet"))
	checkImpostorRefused(t, upstream.AgentAddr().String(), socket, upstream.CA().Bundle().X509Authorities())
}

// TestSignetUnderSPIREImpostor: the same against a real spire-server
// v1.13.3 upstream, the impostor presenting the downstream X509-SVID that
// SPIRE's agent hands Signet.
func TestSignetUnderSPIREImpostor(t *testing.T) {
	bins := spireBinaries(t)
	sp, socket, spireBundle := downstreamAgent(t, bins)
	checkImpostorRefused(t, sp.addr, socket, spireBundle.X509Authorities())
}

// checkImpostorRefused: Signet nested under the upstream at upstreamAddr
// (its downstream SVID served at socket, its roots upstreamRoots) refuses
// an upstream that presents a valid SVID of the trust domain with any
// other ID than spiffe://<td>/spire/server, naming that ID: at start, and
// at rotation (the connection switched to the impostor), leaving nothing
// half-rotated. It also refuses a Workload API that serves an SVID of
// another trust domain.
func checkImpostorRefused(t *testing.T, upstreamAddr, socket string, upstreamRoots []*x509.Certificate) {
	t.Helper()
	impostor, impostorID := startImpostor(t, socket)
	upHost, upPort, _ := net.SplitHostPort(upstreamAddr)
	imHost, imPort, _ := net.SplitHostPort(impostor)
	port := func(s string) int { p, _ := strconv.Atoi(s); return p }
	want := "presented " + impostorID.String() + ", not spiffe://example.org/spire/server"

	t.Run("at start", func(t *testing.T) {
		err := runSignetUntilRefused(t, td, server.UpstreamSPIREConfig{ServerAddress: imHost, ServerPort: port(imPort), WorkloadAPISocket: socket})
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	})

	t.Run("at rotation", func(t *testing.T) {
		proxy := newSwitchProxy(t, upstreamAddr)
		host, p := proxy.hostPort()
		clk := &clock{}
		srv := startSignet(t, signetOptions{now: clk.Now, upstreamSPIRE: &server.UpstreamSPIREConfig{ServerAddress: host, ServerPort: p, WorkloadAPISocket: socket}})
		active := activeCA(srv)
		if _, err := active.Verify(x509.VerifyOptions{Roots: certPool(upstreamRoots), Intermediates: certPool(srv.CA().X509Intermediates()[1:]), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("the nested Signet's CA does not chain to the upstream's roots: %v", err)
		}
		before := srv.CA().X509Slots()
		proxy.target.Store(impostor)
		life := active.NotAfter.Sub(active.NotBefore)
		clk.Set(time.Until(active.NotBefore.Add(life * 2 / 3)))
		_, err := srv.CA().Rotate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Rotate through the impostor = %v, want a refusal saying %q", err, want)
		}
		t.Logf("refused: %v", err)
		after := srv.CA().X509Slots()
		if len(after) != len(before) || !activeCA(srv).Equal(active) || preparedCA(srv) != nil {
			t.Fatalf("half-rotated: %d slots before, %d after; prepared %v", len(before), len(after), preparedCA(srv) != nil)
		}
	})

	t.Run("workload API of another trust domain", func(t *testing.T) {
		other := spiffeid.RequireTrustDomainFromString("other.test")
		err := runSignetUntilRefused(t, other, server.UpstreamSPIREConfig{ServerAddress: upHost, ServerPort: port(upPort), WorkloadAPISocket: socket})
		if !strings.Contains(err.Error(), `trust domain "example.org"`) || !strings.Contains(err.Error(), `"other.test"`) {
			t.Fatalf("refusal %q does not name both trust domains", err)
		}
	})
}

func certPool(cs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cs {
		p.AddCert(c)
	}
	return p
}
