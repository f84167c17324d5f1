package cli

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// workloadAPI is a Workload API server with fixed content, on a real Unix
// socket: a stand-in for the agent so the fetch commands can be tested
// alone (the integration test drives them against a real agent).
type workloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	f       *fixture
	deny    bool
	jwtKey  *ecdsa.PrivateKey
	leafKey []byte
}

func startWorkloadAPI(t *testing.T, f *fixture, deny bool) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := x509.MarshalPKCS8PrivateKey(f.leafKey)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(g, &workloadAPI{f: f, deny: deny, jwtKey: key, leafKey: leafKey})
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return sock
}

func (w *workloadAPI) check(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	if w.deny {
		return status.Error(codes.PermissionDenied, "no identity issued")
	}
	return nil
}

func (w *workloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, s grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	if err := w.check(s.Context()); err != nil {
		return err
	}
	if err := s.Send(&workload.X509SVIDResponse{
		Svids: []*workload.X509SVID{{
			SpiffeId:    "spiffe://example.org/web",
			X509Svid:    w.f.leaf.Raw,
			X509SvidKey: w.leafKey,
			Bundle:      w.f.ca.Raw,
			Hint:        "internal",
		}},
		FederatedBundles: map[string][]byte{"spiffe://other.org": w.f.other.Raw},
	}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (w *workloadAPI) FetchX509Bundles(_ *workload.X509BundlesRequest, s grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	if err := w.check(s.Context()); err != nil {
		return err
	}
	if err := s.Send(&workload.X509BundlesResponse{Bundles: map[string][]byte{
		"spiffe://example.org": w.f.ca.Raw,
		"spiffe://other.org":   w.f.other.Raw,
	}}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (w *workloadAPI) FetchJWTBundles(_ *workload.JWTBundlesRequest, s grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	if err := w.check(s.Context()); err != nil {
		return err
	}
	td := spiffeid.RequireTrustDomainFromString("example.org")
	doc, err := jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{"kid-a": w.f.jwtKey.Public()}).Marshal()
	if err != nil {
		return err
	}
	if err := s.Send(&workload.JWTBundlesResponse{Bundles: map[string][]byte{"spiffe://example.org": doc}}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (w *workloadAPI) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if err := w.check(ctx); err != nil {
		return nil, err
	}
	if len(req.Audience) == 0 {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	sub := "spiffe://example.org/web"
	if req.SpiffeId != "" && req.SpiffeId != sub {
		return nil, status.Error(codes.PermissionDenied, "no identity issued")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: w.jwtKey}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "kid-a"))
	if err != nil {
		return nil, err
	}
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{
		Subject:  sub,
		Audience: req.Audience,
		Expiry:   jwt.NewNumericDate(fixtureNotAfter),
	}).Serialize()
	if err != nil {
		return nil, err
	}
	return &workload.JWTSVIDResponse{Svids: []*workload.JWTSVID{{SpiffeId: sub, Svid: tok}}}, nil
}

// run runs the signet command line and returns exit code, stdout, stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestFetchX509(t *testing.T) {
	f := newFixture(t)
	sock := startWorkloadAPI(t, f, false)

	code, out, errOut := run(t, "fetch", "x509", "--socket-path", sock)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden(t, "fetch_x509.txt", []byte(out))

	code, out, errOut = run(t, "fetch", "x509", "--socket-path", sock, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden(t, "fetch_x509.json", []byte(out))
	if strings.Contains(out, "PRIVATE KEY") {
		t.Error("JSON output contains a private key")
	}

	dir := t.TempDir()
	code, out, errOut = run(t, "fetch", "x509", "--socket-path", sock, "--write", dir, "--silent")
	if code != 0 || out != "" {
		t.Fatalf("exit %d, stdout %q: %s", code, out, errOut)
	}
	modes := map[string]os.FileMode{"svid.0.pem": 0o644, "svid.0.key": 0o600, "bundle.0.pem": 0o644, "federated_bundle.0.0.pem": 0o644}
	for name, mode := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	svid, err := x509svid.Load(filepath.Join(dir, "svid.0.pem"), filepath.Join(dir, "svid.0.key"))
	if err != nil {
		t.Fatalf("written SVID does not load with go-spiffe: %v", err)
	}
	if svid.ID.String() != "spiffe://example.org/web" || !svid.Certificates[0].Equal(f.leaf) {
		t.Errorf("written SVID: %s", svid.ID)
	}
	for name, want := range map[string]*x509.Certificate{"bundle.0.pem": f.ca, "federated_bundle.0.0.pem": f.other} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		block, rest := pem.Decode(data)
		if block == nil || len(bytes.TrimSpace(rest)) != 0 || !bytes.Equal(block.Bytes, want.Raw) {
			t.Errorf("%s does not hold exactly the expected certificate", name)
		}
	}

	// Rewriting over a key file with loose permissions tightens them.
	if err := os.Chmod(filepath.Join(dir, "svid.0.key"), 0o666); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run(t, "fetch", "x509", "--socket-path", sock, "--write", dir)
	if code != 0 || !strings.Contains(out, "Writing key #0 to file "+filepath.Join(dir, "svid.0.key")+".") {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "svid.0.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("rewritten key mode %v", fi.Mode().Perm())
	}
}

func TestFetchJWT(t *testing.T) {
	f := newFixture(t)
	sock := startWorkloadAPI(t, f, false)

	code, out, errOut := run(t, "fetch", "jwt", "--socket-path", sock, "--audience", "db", "--audience", "cache")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(out, "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "\teyJ") {
		t.Fatalf("no token in %q", out)
	}
	golden(t, "fetch_jwt.txt", []byte(strings.Replace(out, strings.TrimPrefix(lines[1], "\t"), "TOKEN", 1)))

	code, out, errOut = run(t, "fetch", "jwt", "--socket-path", sock, "--audience", "db", "--spiffe-id", "spiffe://example.org/web", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got jwtFetchJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.SVIDs) != 1 || got.SVIDs[0].SPIFFEID != "spiffe://example.org/web" || got.SVIDs[0].Token == "" ||
		strings.Join(got.SVIDs[0].Audience, ",") != "db" || got.SVIDs[0].ExpiresAt != "2126-01-01T00:00:00Z" {
		t.Errorf("JSON: %s", out)
	}

	code, _, errOut = run(t, "fetch", "jwt", "--socket-path", sock, "--audience", "db", "--spiffe-id", "spiffe://example.org/other")
	if code != 1 || !strings.Contains(errOut, "PermissionDenied: no identity issued") {
		t.Errorf("foreign --spiffe-id: exit %d, %q", code, errOut)
	}
}

func TestFetchBundle(t *testing.T) {
	f := newFixture(t)
	sock := startWorkloadAPI(t, f, false)

	code, out, errOut := run(t, "fetch", "bundle", "--socket-path", sock)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden(t, "fetch_bundle.pem", []byte(out))

	code, out, errOut = run(t, "fetch", "bundle", "--socket-path", sock, "--format", "spiffe", "--trust-domain", "example.org")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden(t, "fetch_bundle.spiffe.json", []byte(out))
	sb, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), []byte(out))
	if err != nil {
		t.Fatalf("not a SPIFFE bundle: %v", err)
	}
	if len(sb.X509Authorities()) != 1 || !sb.HasJWTAuthority("kid-a") {
		t.Errorf("bundle content: %d X.509 authorities, JWT kid-a %t", len(sb.X509Authorities()), sb.HasJWTAuthority("kid-a"))
	}

	code, out, errOut = run(t, "fetch", "bundle", "--socket-path", sock, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got bundleFetchJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Bundles) != 2 || got.Bundles["example.org"] == nil || got.Bundles["other.org"] == nil {
		t.Errorf("JSON: %s", out)
	}

	code, _, errOut = run(t, "fetch", "bundle", "--socket-path", sock, "--trust-domain", "third.org")
	if code != 1 || !strings.Contains(errOut, "no bundle for trust domain third.org") {
		t.Errorf("unknown trust domain: exit %d, %q", code, errOut)
	}
}

func TestFetchErrors(t *testing.T) {
	f := newFixture(t)
	denied := startWorkloadAPI(t, f, true)
	good := startWorkloadAPI(t, f, false)
	missing := filepath.Join(filepath.Dir(good), "nope.sock")

	tests := []struct {
		name string
		env  string
		args []string
		code int
		want []string
	}{
		{name: "socket missing", args: []string{"fetch", "x509", "--socket-path", missing}, code: 1,
			want: []string{"cannot reach the Workload API socket at " + missing + ": no such file", "signet agent run", "--socket-path"}},
		{name: "not a socket", args: []string{"fetch", "x509", "--socket-path", filepath.Dir(good)}, code: 1,
			want: []string{"not a Unix socket"}},
		{name: "no identity", args: []string{"fetch", "x509", "--socket-path", denied}, code: 1,
			want: []string{"fetching X509-SVIDs: PermissionDenied: no identity issued", "signet entry create", "--selector unix:uid:"}},
		{name: "no identity jwt", args: []string{"fetch", "jwt", "--audience", "a", "--socket-path", denied}, code: 1,
			want: []string{"fetching JWT-SVIDs: PermissionDenied"}},
		{name: "no audience", args: []string{"fetch", "jwt", "--socket-path", good}, code: 2,
			want: []string{"--audience is required"}},
		{name: "bad timeout", args: []string{"fetch", "x509", "--socket-path", good, "--timeout", "0s"}, code: 2,
			want: []string{"--timeout must be positive"}},
		{name: "bad format", args: []string{"fetch", "bundle", "--socket-path", good, "--format", "der"}, code: 2,
			want: []string{"use pem or spiffe"}},
		{name: "positional argument", args: []string{"fetch", "x509", good}, code: 2,
			want: []string{"takes no arguments"}},
		{name: "env socket honoured", env: "unix://" + good, args: []string{"fetch", "x509"}, code: 0},
		{name: "env socket bad", env: "unix://" + missing, args: []string{"fetch", "x509"}, code: 1,
			want: []string{"cannot reach the Workload API socket at " + missing}},
		{name: "flag beats env", env: "unix://" + missing, args: []string{"fetch", "x509", "--socket-path", good}, code: 0},
		{name: "env not a URI", env: "tcp://nohost", args: []string{"fetch", "x509"}, code: 2,
			want: []string{"invalid $SPIFFE_ENDPOINT_SOCKET"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SPIFFE_ENDPOINT_SOCKET", tt.env)
			if tt.env == "" {
				os.Unsetenv("SPIFFE_ENDPOINT_SOCKET")
			}
			code, _, errOut := run(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not mention %q", errOut, w)
				}
			}
		})
	}
}

// The fetch commands give up after --timeout on an agent that accepts the
// connection but never answers.
func TestFetchTimeout(t *testing.T) {
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "api.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(g, stallingAPI{})
	go g.Serve(lis)
	defer g.Stop()
	start := time.Now()
	code, _, errOut := run(t, "fetch", "x509", "--socket-path", sock, "--timeout", "200ms")
	if code != 1 || !strings.Contains(errOut, "did not answer within 200ms") {
		t.Errorf("exit %d, %q (after %v)", code, errOut, time.Since(start))
	}
}

type stallingAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
}

func (stallingAPI) FetchX509SVID(_ *workload.X509SVIDRequest, s grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	<-s.Context().Done()
	return s.Context().Err()
}
