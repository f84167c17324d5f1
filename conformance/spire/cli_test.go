package spire

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// backend is a server the spire-server CLI administers: Signet or SPIRE.
type backend struct {
	name      string
	cliBin    string
	socket    string
	agentAddr string
	admin     *grpc.ClientConn
	// vars are values captured from earlier outputs (such as generated
	// tokens); normalization replaces them with their names.
	vars map[string]string
}

func newBackend(t *testing.T, name, cliBin, socket, agentAddr string) *backend {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &backend{name: name, cliBin: cliBin, socket: socket, agentAddr: agentAddr, admin: conn, vars: map[string]string{}}
}

// result is one CLI invocation's outcome.
type result struct {
	out string
	err error
}

func (b *backend) cli(args ...string) result {
	out, err := cli(context.Background(), b.cliBin, b.socket, args...)
	return result{out: out, err: err}
}

// attest attests an agent with a join token over the backend's agent
// endpoint, as a spire-agent would, and returns its SPIFFE ID.
func (b *backend) attest(t *testing.T, token string) spiffeid.ID {
	t.Helper()
	id, err := b.attestErr(token)
	if err != nil {
		t.Fatalf("%s: attest with token %s: %v", b.name, token, err)
	}
	return id
}

// agentConn connects to the backend's agent endpoint, verifying the server
// by its SPIFFE ID against the backend's bundle.
func (b *backend) agentConn(ctx context.Context) (*grpc.ClientConn, error) {
	pb, err := bundlev1.NewBundleClient(b.admin).GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		return nil, err
	}
	bundle := spiffebundle.New(td)
	for _, a := range pb.X509Authorities {
		c, err := x509.ParseCertificate(a.Asn1)
		if err != nil {
			return nil, err
		}
		bundle.AddX509Authority(c)
	}
	serverID := spiffeid.RequireFromPath(td, "/spire/server")
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified by SPIFFE ID below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, _, err := x509svid.ParseAndVerify(raw, bundle)
			if err != nil {
				return err
			}
			if id != serverID {
				return fmt.Errorf("server presented %v", id)
			}
			return nil
		},
	}
	return grpc.NewClient(b.agentAddr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
}

func (b *backend) attestErr(token string) (spiffeid.ID, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := b.agentConn(ctx)
	if err != nil {
		return spiffeid.ID{}, err
	}
	defer conn.Close()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	stream, err := agentv1.NewAgentClient(conn).AttestAgent(ctx)
	if err != nil {
		return spiffeid.ID{}, err
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: "join_token", Payload: []byte(token)},
		Params: &agentv1.AgentX509SVIDParams{Csr: csr},
	}}}); err != nil {
		return spiffeid.ID{}, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return spiffeid.ID{}, err
	}
	return spiffeid.FromPath(td, resp.GetResult().GetSvid().GetId().GetPath())
}

// createToken creates a join token with a chosen value through the API, so
// both backends hold agents with the same IDs.
func (b *backend) createToken(t *testing.T, token string) {
	t.Helper()
	if _, err := agentv1.NewAgentClient(b.admin).CreateJoinToken(context.Background(), &agentv1.CreateJoinTokenRequest{Token: token, Ttl: 600}); err != nil {
		t.Fatalf("%s: create token %s: %v", b.name, token, err)
	}
}

// volatile are JSON fields that legitimately differ between two servers
// holding the same state: serial numbers and timestamps. Timestamps are
// compared as zero or non-zero.
var volatile = map[string]bool{
	"x509svid_serial_number": true,
	// Status messages are free text; codes are compared.
	"message": true,
}

var timestamps = map[string]bool{
	"created_at":          true,
	"expires_at":          true,
	"x509svid_expires_at": true,
}

// normalize parses a JSON output and replaces volatile fields, captured
// values and key material with placeholders, and sorts arrays, so outputs
// from two servers compare structurally.
func normalize(out string, vars map[string]string, ignore ...string) (any, error) {
	var v any
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not JSON: %w: %q", err, out)
	}
	skip := map[string]bool{}
	for k := range volatile {
		skip[k] = true
	}
	for _, k := range ignore {
		skip[k] = true
	}
	return walk(v, skip, vars), nil
}

func walk(v any, skip map[string]bool, vars map[string]string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if skip[k] {
				x[k] = "<" + k + ">"
				continue
			}
			if timestamps[k] {
				if n, ok := e.(json.Number); ok && n.String() != "0" {
					x[k] = "<non-zero>"
				} else if str, ok := e.(string); ok && str != "0" && str != "" {
					x[k] = "<non-zero>"
				}
				continue
			}
			x[k] = walk(e, skip, vars)
		}
		return x
	case []any:
		for i := range x {
			x[i] = walk(x[i], skip, vars)
		}
		sort.Slice(x, func(i, j int) bool {
			a, _ := json.Marshal(x[i])
			b, _ := json.Marshal(x[j])
			return string(a) < string(b)
		})
		return x
	case string:
		// Longest values first, so one value containing another is
		// replaced whole.
		names := make([]string, 0, len(vars))
		for n := range vars {
			names = append(names, n)
		}
		sort.Slice(names, func(i, j int) bool { return len(vars[names[i]]) > len(vars[names[j]]) })
		for _, n := range names {
			if vars[n] != "" {
				x = strings.ReplaceAll(x, vars[n], "<"+n+">")
			}
		}
		return x
	}
	return v
}

// cliRow is one spire-server CLI command run against both servers.
type cliRow struct {
	name string
	args []string
	// fails is true when the command is expected to fail on both.
	fails bool
	// ignore lists extra JSON fields to ignore for this row.
	ignore []string
	// compare replaces the default JSON comparison.
	compare func(signet, spire result) error
	// deviation documents a known difference from SPIRE: expectDiff lists
	// the exact diffJSON lines the outputs differ by.
	deviation  string
	expectDiff []string
	// ids, when not nil, are the entry IDs (or agent join tokens) both
	// outputs must list.
	ids []string
	// capture stores values from the output in the backend's vars.
	capture func(b *backend, out string) error
}

// compareJSON is the default comparison: the same exit status on both
// (as row.fails expects), equal JSON outputs after normalization, and for
// failures without output, the same gRPC status code in the error.
func compareJSON(row cliRow, sg, sp *backend, a, b result) error {
	if (a.err != nil) != (b.err != nil) {
		return fmt.Errorf("exit status differs: signet: %v; spire: %v", a.err, b.err) //nolint:errorlint // either may be nil
	}
	if (a.err != nil) != row.fails {
		return fmt.Errorf("both exit with failure=%v, want %v", a.err != nil, row.fails)
	}
	if row.compare != nil {
		return row.compare(a, b)
	}
	if a.err != nil && strings.TrimSpace(a.out) == "" && strings.TrimSpace(b.out) == "" {
		ca, cb := grpcCode(a.err), grpcCode(b.err)
		if ca != cb {
			return fmt.Errorf("status code: signet %s, spire %s", ca, cb)
		}
		return nil
	}
	na, err := normalize(a.out, sg.vars, row.ignore...)
	if err != nil {
		return fmt.Errorf("signet output: %w (err %v)", err, a.err) //nolint:errorlint // the exit error may be nil
	}
	nb, err := normalize(b.out, sp.vars, row.ignore...)
	if err != nil {
		return fmt.Errorf("spire output: %w (err %v)", err, b.err) //nolint:errorlint // the exit error may be nil
	}
	if row.ids != nil {
		for name, out := range map[string]string{"signet": a.out, "spire": b.out} {
			got, err := listedIDs(out)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if !slices.Equal(got, row.ids) {
				return fmt.Errorf("%s lists %q, want %q", name, got, row.ids)
			}
		}
	}
	d := diffJSON("", na, nb)
	if row.deviation != "" {
		if !slices.Equal(d, row.expectDiff) {
			return fmt.Errorf("documented deviation (%s) changed: want diff %q, got %q", row.deviation, row.expectDiff, d)
		}
		return nil
	}
	if len(d) > 0 {
		return fmt.Errorf("outputs differ (signet vs spire):\n  %s", strings.Join(d, "\n  "))
	}
	return nil
}

var codeRE = regexp.MustCompile(`code = (\w+)`)

// grpcCode extracts the gRPC status code the CLI printed in an error.
func grpcCode(err error) string {
	if m := codeRE.FindStringSubmatch(err.Error()); m != nil {
		return m[1]
	}
	return "(none)"
}

// diffJSON lists the paths where a and b differ.
func diffJSON(path string, a, b any) []string {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			break
		}
		var out []string
		keys := map[string]bool{}
		for k := range x {
			keys[k] = true
		}
		for k := range y {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			out = append(out, diffJSON(path+"."+k, x[k], y[k])...)
		}
		return out
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			break
		}
		var out []string
		for i := range x {
			out = append(out, diffJSON(fmt.Sprintf("%s[%d]", path, i), x[i], y[i])...)
		}
		return out
	}
	if reflect.DeepEqual(a, b) {
		return nil
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return []string{fmt.Sprintf("%s: %s vs %s", path, ja, jb)}
}

// listedIDs returns the sorted entry IDs or agent join tokens of a list
// output.
func listedIDs(out string) ([]string, error) {
	var v struct {
		Entries []struct{ ID string }
		Agents  []struct {
			ID struct{ Path string }
		}
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return nil, err
	}
	ids := []string{}
	for _, e := range v.Entries {
		ids = append(ids, e.ID)
	}
	for _, a := range v.Agents {
		ids = append(ids, a.ID.Path[strings.LastIndex(a.ID.Path, "/")+1:])
	}
	sort.Strings(ids)
	return ids, nil
}

// pemCAs compares PEM outputs: the same number of CA certificates, each a
// CA of the trust domain.
func pemCAs(a, b result) error {
	count := func(out string) (int, error) {
		n := 0
		data := []byte(out)
		for {
			var blk *pem.Block
			blk, data = pem.Decode(data)
			if blk == nil {
				break
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return 0, err
			}
			if !c.IsCA || len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://"+td.Name() {
				return 0, fmt.Errorf("certificate %v is not a CA of %s", c.Subject, td)
			}
			n++
		}
		return n, nil
	}
	na, err := count(a.out)
	if err != nil {
		return fmt.Errorf("signet: %w", err)
	}
	nb, err := count(b.out)
	if err != nil {
		return fmt.Errorf("spire: %w", err)
	}
	if na != nb || na == 0 {
		return fmt.Errorf("PEM certificates: signet %d, spire %d", na, nb)
	}
	return nil
}

// mintedX509 compares x509 mint outputs: an SVID for the requested ID and
// DNS name, a private key, and the trust domain's roots.
func mintedX509(a, b result) error {
	check := func(out string) (int, error) {
		var ms []struct {
			X509SVID   [][]byte `json:"x509_svid"`
			PrivateKey []byte   `json:"private_key"`
			RootCAs    [][]byte `json:"root_cas"`
		}
		if err := json.Unmarshal([]byte(out), &ms); err != nil {
			return 0, err
		}
		if len(ms) != 1 {
			return 0, fmt.Errorf("want one mint result: %s", out)
		}
		m := ms[0]
		if len(m.X509SVID) == 0 || len(m.PrivateKey) == 0 || len(m.RootCAs) == 0 {
			return 0, fmt.Errorf("incomplete mint output: %s", out)
		}
		leaf, err := x509.ParseCertificate(m.X509SVID[0])
		if err != nil {
			return 0, err
		}
		id, err := x509svid.IDFromCert(leaf)
		if err != nil {
			return 0, err
		}
		if id.String() != "spiffe://example.org/minted" || !slices.Equal(leaf.DNSNames, []string{"m.example.org"}) {
			return 0, fmt.Errorf("minted %v %v", id, leaf.DNSNames)
		}
		if life := leaf.NotAfter.Sub(leaf.NotBefore); life > 11*time.Minute {
			return 0, fmt.Errorf("minted SVID lives %v, want about 10m", life)
		}
		if _, err := x509.ParsePKCS8PrivateKey(m.PrivateKey); err != nil {
			return 0, fmt.Errorf("private key: %w", err)
		}
		return len(m.X509SVID), nil
	}
	na, err := check(a.out)
	if err != nil {
		return fmt.Errorf("signet: %w", err)
	}
	nb, err := check(b.out)
	if err != nil {
		return fmt.Errorf("spire: %w", err)
	}
	if na != nb {
		return fmt.Errorf("chain length: signet %d, spire %d", na, nb)
	}
	return nil
}

// mintedJWT compares jwt mint outputs: the response fields, and the
// token's header and claims. A single audience may be a string or a
// one-element array (RFC 7519 §4.1.3); SPIRE writes an array.
func mintedJWT(a, b result) error {
	decode := func(out string) (map[string]any, error) {
		var r struct {
			SVID struct {
				Token string
				ID    struct {
					TrustDomain string `json:"trust_domain"`
					Path        string
				} `json:"id"`
				ExpiresAt string `json:"expires_at"`
				IssuedAt  string `json:"issued_at"`
			}
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return nil, err
		}
		parts := strings.Split(r.SVID.Token, ".")
		if len(parts) != 3 {
			return nil, fmt.Errorf("token is not a JWS: %q", r.SVID.Token)
		}
		var hdr, claims map[string]any
		for i, dst := range []*map[string]any{&hdr, &claims} {
			raw, err := base64.RawURLEncoding.DecodeString(parts[i])
			if err != nil {
				return nil, err
			}
			if err := json.Unmarshal(raw, dst); err != nil {
				return nil, err
			}
		}
		if s, ok := claims["aud"].(string); ok {
			claims["aud"] = []any{s}
		}
		exp, _ := claims["exp"].(float64)
		iat, _ := claims["iat"].(float64)
		return map[string]any{
			"id": r.SVID.ID, "alg": hdr["alg"], "typ": hdr["typ"], "has_kid": hdr["kid"] != nil,
			"sub": claims["sub"], "aud": claims["aud"], "lifetime": exp - iat,
			"expires_at_matches": fmt.Sprint(int64(exp)) == r.SVID.ExpiresAt,
		}, nil
	}
	da, err := decode(a.out)
	if err != nil {
		return fmt.Errorf("signet: %w", err)
	}
	db, err := decode(b.out)
	if err != nil {
		return fmt.Errorf("spire: %w", err)
	}
	if d := diffJSON("", jsonRoundTrip(da), jsonRoundTrip(db)); len(d) > 0 {
		return fmt.Errorf("minted JWT-SVIDs differ (signet vs spire):\n  %s", strings.Join(d, "\n  "))
	}
	return nil
}

func jsonRoundTrip(v any) any {
	raw, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(raw, &out)
	return out
}

// sameText compares text outputs exactly.
// sameSlotsWith is sameSlots that also requires each output to report the
// given slots.
func sameSlotsWith(slots ...string) func(a, b result) error {
	return func(a, b result) error {
		if err := sameSlots(a, b); err != nil {
			return err
		}
		for _, sl := range slots {
			if !strings.Contains(a.out, `"`+strings.TrimSuffix(sl, ".")+`"`) {
				return fmt.Errorf("output lacks the %s slot: %s", strings.TrimSuffix(sl, "."), a.out)
			}
		}
		return nil
	}
}

// sameSlots compares LocalAuthority outputs by the slots they report
// (active, prepared, old) and the fields of each, not by their values.
func sameSlots(a, b result) error {
	if (a.err != nil) != (b.err != nil) {
		return fmt.Errorf("exit status differs: signet: %v; spire: %v", a.err, b.err) //nolint:errorlint // either may be nil
	}
	shape := func(out string) (string, error) {
		var doc map[string]any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			return "", fmt.Errorf("not JSON: %w: %q", err, out)
		}
		var keys []string
		for k, v := range doc {
			slot, ok := v.(map[string]any)
			if !ok || len(slot) == 0 {
				continue
			}
			for f := range slot {
				keys = append(keys, k+"."+f)
			}
		}
		sort.Strings(keys)
		return strings.Join(keys, ","), nil
	}
	sa, err := shape(a.out)
	if err != nil {
		return fmt.Errorf("signet: %w", err)
	}
	sb, err := shape(b.out)
	if err != nil {
		return fmt.Errorf("spire: %w", err)
	}
	if sa != sb {
		return fmt.Errorf("slots differ\nsignet: %s\nspire:  %s", sa, sb)
	}
	return nil
}

func sameText(a, b result) error {
	if a.out != b.out {
		return fmt.Errorf("outputs differ\nsignet: %q\nspire:  %q", a.out, b.out)
	}
	return nil
}

// federationCA returns a self-signed CA certificate for a trust domain.
func federationCA(t *testing.T, td string) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{td}},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: td}},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// federationFixtures writes a PEM bundle for fed.example and a SPIFFE
// bundle (JWKS) for other.example.
func federationFixtures(t *testing.T, dir string) (pemPath, spiffePath string) {
	t.Helper()
	fed := federationCA(t, "fed.example")
	pemPath = filepath.Join(dir, "fed.pem")
	if err := os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fed.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	other := spiffebundle.New(spiffeid.RequireTrustDomainFromString("other.example"))
	other.AddX509Authority(federationCA(t, "other.example"))
	jwtKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := other.AddJWTAuthority("other-kid", jwtKey.Public()); err != nil {
		t.Fatal(err)
	}
	other.SetRefreshHint(300 * time.Second)
	other.SetSequenceNumber(7)
	doc, err := other.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	spiffePath = filepath.Join(dir, "other.json")
	if err := os.WriteFile(spiffePath, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	return pemPath, spiffePath
}

// captureJSON stores a string field of a JSON output in the backend's vars.
func captureJSON(name string, path ...string) func(b *backend, out string) error {
	return func(b *backend, out string) error {
		var v any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			return err
		}
		for _, p := range path {
			switch x := v.(type) {
			case map[string]any:
				v = x[p]
			case []any:
				if len(x) == 0 {
					return fmt.Errorf("empty array at %q", p)
				}
				v = x[0]
				if m, ok := v.(map[string]any); ok {
					v = m[p]
				}
			}
		}
		s, ok := v.(string)
		if !ok || s == "" {
			return fmt.Errorf("no string at %v in %s", path, out)
		}
		b.vars[name] = s
		return nil
	}
}

// TestSPIREServerCLI runs spire-server v1.13.3 CLI commands with -socketPath
// against a Signet server and against a real spire-server holding the same
// state, and compares the outputs structurally. Each row is a subtest; its
// name is listed in docs/spire-compat.md.
func TestSPIREServerCLI(t *testing.T) {
	bins := spireBinaries(t)
	ss := startSPIREServer(t, bins)
	sg := startSignet(t, signetOptions{})
	sgB := newBackend(t, "signet", bins.server, sg.AdminSocket(), sg.AgentAddr().String())
	spB := newBackend(t, "spire", bins.server, ss.socket, ss.addr)

	// Same agents on both: tokens with chosen values, attested over the
	// agent endpoint.
	for _, b := range []*backend{sgB, spB} {
		for _, tok := range []string{"tok-a-0123456789", "tok-b-0123456789", "tok-c-0123456789"} {
			b.createToken(t, tok)
			b.attest(t, tok)
		}
	}
	fixtures := shortDir(t)
	fedPEM, otherJSON := federationFixtures(t, fixtures)
	entryData := filepath.Join(fixtures, "entries.json")
	if err := os.WriteFile(entryData, []byte(`{"entries": [
		{"entry_id": "d-1", "spiffe_id": "spiffe://example.org/data/1", "parent_id": "spiffe://example.org/spire/agent/join_token/tok-a-0123456789",
		 "selectors": [{"type": "unix", "value": "uid:4001"}], "x509_svid_ttl": 300, "dns_names": ["d1.example.org"]},
		{"entry_id": "d-2", "spiffe_id": "spiffe://example.org/data/2", "parent_id": "spiffe://example.org/spire/agent/join_token/tok-a-0123456789",
		 "selectors": [{"type": "unix", "value": "uid:4002"}], "admin": true},
		{"entry_id": "d-3", "spiffe_id": "spiffe://other.org/data/3", "parent_id": "spiffe://example.org/spire/agent/join_token/tok-a-0123456789",
		 "selectors": [{"type": "unix", "value": "uid:4003"}]}
	]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	deleteData := filepath.Join(fixtures, "delete.json")
	if err := os.WriteFile(deleteData, []byte(`{"ids": ["d-1", "d-2", "d-3"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	agentA := "spiffe://example.org/spire/agent/join_token/tok-a-0123456789"
	agentB := "spiffe://example.org/spire/agent/join_token/tok-b-0123456789"
	agentC := "spiffe://example.org/spire/agent/join_token/tok-c-0123456789"
	j := []string{"-output", "json"}
	with := func(args ...string) []string { return append(args, j...) }

	rows := []cliRow{
		// Federated bundles first: entries federate with them.
		{name: "bundle set pem", args: with("bundle", "set", "-id", "spiffe://fed.example", "-format", "pem", "-path", fedPEM)},
		{name: "bundle set spiffe", args: with("bundle", "set", "-id", "spiffe://other.example", "-format", "spiffe", "-path", otherJSON)},
		{name: "bundle set own trust domain refused", args: with("bundle", "set", "-id", "spiffe://example.org", "-path", fedPEM)},
		{name: "bundle count", args: with("bundle", "count")},
		{name: "bundle list pretty", args: []string{"bundle", "list", "-id", "spiffe://fed.example"}, compare: sameText},
		{name: "bundle list", args: with("bundle", "list")},
		{name: "bundle list id", args: with("bundle", "list", "-id", "spiffe://fed.example")},
		{name: "bundle list id spiffe format", args: []string{"bundle", "list", "-id", "spiffe://other.example", "-format", "spiffe"}, compare: sameJWKS},
		{name: "bundle list unknown id", args: with("bundle", "list", "-id", "spiffe://nowhere.example"), fails: true},
		{name: "bundle show", args: with("bundle", "show"), ignore: []string{"asn1", "public_key", "key_id", "sequence_number", "refresh_hint"}},
		{name: "bundle show pem", args: []string{"bundle", "show", "-format", "pem"}, compare: pemCAs},

		// Entries.
		{name: "entry create basic", args: with("entry", "create", "-entryID", "e-basic", "-parentID", agentA, "-spiffeID", "spiffe://example.org/basic", "-selector", "unix:uid:1000")},
		{name: "entry create ttl dns hint", args: with("entry", "create", "-entryID", "e-full", "-parentID", agentA, "-spiffeID", "spiffe://example.org/full",
			"-selector", "unix:uid:1001", "-selector", "unix:gid:1001", "-x509SVIDTTL", "600", "-jwtSVIDTTL", "300", "-dns", "a.example.org", "-dns", "b.example.org", "-hint", "blue")},
		{name: "entry create federatesWith", args: with("entry", "create", "-entryID", "e-fed", "-parentID", agentB, "-spiffeID", "spiffe://example.org/fed",
			"-selector", "k8s:ns:fed", "-federatesWith", "spiffe://fed.example", "-federatesWith", "spiffe://other.example")},
		{name: "entry create federatesWith unknown bundle", args: with("entry", "create", "-parentID", agentB, "-spiffeID", "spiffe://example.org/nofed",
			"-selector", "k8s:ns:nofed", "-federatesWith", "spiffe://nowhere.example"),
			deviation:  "SPIRE reports a missing federated bundle as Internal (a datastore error); Signet as InvalidArgument",
			expectDiff: []string{`.results[0].status.code: 3 vs 13`}},
		{name: "entry create admin", args: with("entry", "create", "-entryID", "e-admin", "-parentID", agentA, "-spiffeID", "spiffe://example.org/admin", "-selector", "unix:uid:0", "-admin")},
		{name: "entry create downstream", args: with("entry", "create", "-entryID", "e-down", "-parentID", agentA, "-spiffeID", "spiffe://example.org/downstream", "-selector", "unix:uid:2000", "-downstream")},
		{name: "entry create node", args: with("entry", "create", "-entryID", "e-node", "-node", "-spiffeID", "spiffe://example.org/nodes", "-selector", "spiffe_id:"+agentC)},
		{name: "entry create entryExpiry", args: with("entry", "create", "-entryID", "e-exp", "-parentID", agentB, "-spiffeID", "spiffe://example.org/exp", "-selector", "unix:uid:3000", "-entryExpiry", "4102444800")},
		{name: "entry create similar entry exists", args: with("entry", "create", "-entryID", "e-dup", "-parentID", agentA, "-spiffeID", "spiffe://example.org/basic", "-selector", "unix:uid:1000")},
		{name: "entry create entryID exists", args: with("entry", "create", "-entryID", "e-basic", "-parentID", agentA, "-spiffeID", "spiffe://example.org/other", "-selector", "unix:uid:1000")},
		{name: "entry create foreign spiffeID", args: with("entry", "create", "-parentID", agentA, "-spiffeID", "spiffe://other.org/w", "-selector", "unix:uid:1")},
		{name: "entry show all", args: with("entry", "show"), ids: []string{"e-admin", "e-basic", "e-down", "e-exp", "e-fed", "e-full", "e-node"}},
		{name: "entry show entryID", args: with("entry", "show", "-entryID", "e-full"), ids: []string{"e-full"}},
		{name: "entry show unknown entryID", args: with("entry", "show", "-entryID", "nope"), fails: true},
		{name: "entry show spiffeID", args: with("entry", "show", "-spiffeID", "spiffe://example.org/basic"), ids: []string{"e-basic"}},
		{name: "entry show parentID", args: with("entry", "show", "-parentID", agentB), ids: []string{"e-exp", "e-fed"}},
		{name: "entry show selector superset", args: with("entry", "show", "-selector", "unix:uid:1001"), ids: []string{"e-full"}},
		{name: "entry show selector exact", args: with("entry", "show", "-selector", "unix:uid:1001", "-matchSelectorsOn", "exact"), ids: []string{}},
		{name: "entry show selector exact both", args: with("entry", "show", "-selector", "unix:uid:1001", "-selector", "unix:gid:1001", "-matchSelectorsOn", "exact"), ids: []string{"e-full"}},
		{name: "entry show selector subset", args: with("entry", "show", "-selector", "unix:uid:1001", "-selector", "unix:gid:1001", "-selector", "unix:uid:1000", "-matchSelectorsOn", "subset"), ids: []string{"e-basic", "e-full"}},
		{name: "entry show selector any", args: with("entry", "show", "-selector", "unix:uid:1000", "-selector", "k8s:ns:fed", "-matchSelectorsOn", "any"), ids: []string{"e-basic", "e-fed"}},
		{name: "entry show federatesWith", args: with("entry", "show", "-federatesWith", "spiffe://fed.example"), ids: []string{"e-fed"}},
		{name: "entry show federatesWith exact", args: with("entry", "show", "-federatesWith", "spiffe://fed.example", "-matchFederatesWithOn", "exact"), ids: []string{}},
		{name: "entry show federatesWith any", args: with("entry", "show", "-federatesWith", "spiffe://fed.example", "-matchFederatesWithOn", "any"), ids: []string{"e-fed"}},
		{name: "entry show hint", args: with("entry", "show", "-hint", "blue"), ids: []string{"e-full"}},
		{name: "entry show downstream", args: with("entry", "show", "-downstream"), ids: []string{"e-down"}},
		{name: "entry show pretty", args: []string{"entry", "show", "-entryID", "e-full"}, compare: sameText},
		{name: "entry show selector pretty", args: []string{"entry", "show", "-selector", "unix:uid:1001"}, compare: sameText},
		{name: "entry count pretty", args: []string{"entry", "count"}, compare: sameText},
		{name: "entry count", args: with("entry", "count")},
		{name: "entry count filtered", args: with("entry", "count", "-parentID", agentA, "-selector", "unix:uid:1000", "-matchSelectorsOn", "any")},
		{name: "entry count downstream", args: with("entry", "count", "-downstream")},
		{name: "entry update", args: with("entry", "update", "-entryID", "e-basic", "-parentID", agentA, "-spiffeID", "spiffe://example.org/basic",
			"-selector", "unix:uid:1000", "-selector", "unix:gid:1000", "-x509SVIDTTL", "1200", "-jwtSVIDTTL", "60", "-dns", "c.example.org", "-hint", "green")},
		{name: "entry update admin downstream", args: with("entry", "update", "-entryID", "e-full", "-parentID", agentA, "-spiffeID", "spiffe://example.org/full",
			"-selector", "unix:uid:1001", "-admin", "-downstream")},
		{name: "entry update unknown entryID", args: with("entry", "update", "-entryID", "nope", "-parentID", agentA, "-spiffeID", "spiffe://example.org/x", "-selector", "unix:uid:1")},
		{name: "entry show after update", args: with("entry", "show", "-entryID", "e-basic"), ids: []string{"e-basic"}},
		{name: "entry delete", args: with("entry", "delete", "-entryID", "e-exp")},
		{name: "entry delete unknown entryID", args: with("entry", "delete", "-entryID", "e-exp")},
		{name: "entry count after delete", args: with("entry", "count")},

		{name: "entry create data file", args: with("entry", "create", "-data", entryData)},
		{name: "entry delete file", args: with("entry", "delete", "-file", deleteData)},

		// Minting for workloads without an agent.
		{name: "x509 mint", args: with("x509", "mint", "-spiffeID", "spiffe://example.org/minted", "-dns", "m.example.org", "-ttl", "10m"), compare: mintedX509},
		{name: "jwt mint", args: with("jwt", "mint", "-spiffeID", "spiffe://example.org/minted", "-audience", "db", "-ttl", "5m"), compare: mintedJWT},

		// Join tokens.
		{name: "token generate", args: with("token", "generate", "-ttl", "600"), ignore: []string{"value"}},
		{name: "token generate spiffeID", args: with("token", "generate", "-spiffeID", "spiffe://example.org/alias"), capture: captureJSON("token", "value"), ignore: []string{"value"}},
		{name: "token generate spiffeID entry", args: with("entry", "show", "-spiffeID", "spiffe://example.org/alias"), ignore: []string{"id"}},
		{name: "token generate negative ttl", args: with("token", "generate", "-ttl", "-1"), fails: true},

		// Agents: tok-a, tok-b and tok-c attested on both.
		{name: "agent count", args: with("agent", "count")},
		{name: "agent count pretty", args: []string{"agent", "count"}, compare: sameText},
		{name: "agent list", args: with("agent", "list"), ids: []string{"tok-a-0123456789", "tok-b-0123456789", "tok-c-0123456789"}},
		{name: "agent list attestationType", args: with("agent", "list", "-attestationType", "join_token"), ids: []string{"tok-a-0123456789", "tok-b-0123456789", "tok-c-0123456789"}},
		{name: "agent list attestationType none", args: with("agent", "list", "-attestationType", "x509pop"), ids: []string{}},
		{name: "agent list canReattest", args: with("agent", "list", "-canReattest", "false"), ids: []string{"tok-a-0123456789", "tok-b-0123456789", "tok-c-0123456789"}},
		{name: "agent list expiresBefore", args: with("agent", "list", "-expiresBefore", "2000-01-01 00:00:00 +0000 +00"), ids: []string{}},
		{name: "agent list expiresBefore future", args: with("agent", "list", "-expiresBefore", "2100-01-01 00:00:00 +0000 +00"), ids: []string{"tok-a-0123456789", "tok-b-0123456789", "tok-c-0123456789"}},
		{name: "agent count expiresBefore", args: with("agent", "count", "-expiresBefore", "2100-01-01 00:00:00 +0000 +00")},
		{name: "agent show", args: with("agent", "show", "-spiffeID", agentA)},
		{name: "agent show unknown", args: with("agent", "show", "-spiffeID", "spiffe://example.org/spire/agent/join_token/nope"), fails: true},
		{name: "agent evict", args: with("agent", "evict", "-spiffeID", agentB)},
		{name: "agent evict unknown", args: with("agent", "evict", "-spiffeID", agentB), fails: true},
		{name: "agent ban", args: with("agent", "ban", "-spiffeID", agentC)},
		{name: "agent ban unknown", args: with("agent", "ban", "-spiffeID", agentB), fails: true},
		{name: "agent list banned", args: with("agent", "list", "-banned", "true"), ids: []string{"tok-c-0123456789"}},
		{name: "agent count banned", args: with("agent", "count", "-banned", "true")},
		{name: "agent count not banned", args: with("agent", "count", "-banned", "false")},
		{name: "agent list after evict and ban", args: with("agent", "list"), ids: []string{"tok-a-0123456789", "tok-c-0123456789"}},
		{name: "agent purge dryRun", args: with("agent", "purge", "-dryRun")},

		// Bundle deletion: fed.example is used by e-fed.
		{name: "bundle delete restrict in use", args: with("bundle", "delete", "-id", "spiffe://fed.example")},
		{name: "bundle delete dissociate", args: with("bundle", "delete", "-id", "spiffe://fed.example", "-mode", "dissociate")},
		{name: "bundle delete dissociate entry", args: with("entry", "show", "-entryID", "e-fed"),
			deviation:  "dissociating a bundle changes the entry's federates_with; Signet bumps its revision so agents syncing by revision see it, SPIRE does not",
			expectDiff: []string{`.entries[0].revision_number: "1" vs "0"`}},
		{name: "bundle delete delete mode", args: with("bundle", "delete", "-id", "spiffe://other.example", "-mode", "delete")},
		{name: "bundle delete delete mode entry", args: with("entry", "show", "-entryID", "e-fed"), fails: true},
		{name: "bundle delete unknown", args: with("bundle", "delete", "-id", "spiffe://other.example")},
		{name: "bundle count after delete", args: with("bundle", "count")},

		// LocalAuthority: the authority IDs differ by nature; the slots
		// each server reports must not.
		{name: "localauthority x509 show", args: with("localauthority", "x509", "show"), compare: sameSlots},
		{name: "localauthority jwt show", args: with("localauthority", "jwt", "show"), compare: sameSlots},
		{name: "localauthority x509 prepare", args: with("localauthority", "x509", "prepare"), compare: sameSlots},
		{name: "localauthority x509 show after prepare", args: with("localauthority", "x509", "show"), compare: sameSlotsWith("active.", "prepared.")},
		{name: "localauthority jwt prepare", args: with("localauthority", "jwt", "prepare"), compare: sameSlots},
		{name: "localauthority jwt show after prepare", args: with("localauthority", "jwt", "show"), compare: sameSlotsWith("active.", "prepared.")},
		{name: "healthcheck", args: []string{"healthcheck"}, compare: sameText},
		{name: "healthcheck shallow", args: []string{"healthcheck", "-shallow"}, compare: sameText},
		{name: "healthcheck verbose", args: []string{"healthcheck", "-verbose"}, compare: sameText},
	}

	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			var b result
			done := make(chan struct{})
			go func() { b = spB.cli(row.args...); close(done) }()
			a := sgB.cli(row.args...)
			<-done
			if row.capture != nil && a.err == nil && b.err == nil {
				if err := row.capture(sgB, a.out); err != nil {
					t.Errorf("signet: capture: %v", err)
				}
				if err := row.capture(spB, b.out); err != nil {
					t.Errorf("spire: capture: %v", err)
				}
			}
			if os.Getenv("SIGNET_TEST_LOG") != "" {
				t.Logf("signet: %s %v\nspire:  %s %v", a.out, a.err, b.out, b.err)
			}
			if err := compareJSON(row, sgB, spB, a, b); err != nil {
				t.Errorf("spire-server %s\n%v\nsignet raw: %s %v\nspire raw:  %s %v", strings.Join(row.args, " "), err, a.out, a.err, b.out, b.err)
			}
		})
	}
}

// sameJWKS compares SPIFFE bundle documents.
func sameJWKS(a, b result) error {
	if a.err != nil || b.err != nil {
		return errors.Join(a.err, b.err)
	}
	pa, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("other.example"), []byte(a.out))
	if err != nil {
		return fmt.Errorf("signet: %w", err)
	}
	pb, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("other.example"), []byte(b.out))
	if err != nil {
		return fmt.Errorf("spire: %w", err)
	}
	if !pa.Equal(pb) {
		var ba, bb bytes.Buffer
		_ = json.Indent(&ba, []byte(a.out), "", " ")
		_ = json.Indent(&bb, []byte(b.out), "", " ")
		return fmt.Errorf("bundles differ\nsignet: %s\nspire: %s", ba.String(), bb.String())
	}
	return nil
}
