package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
)

// batchSize is the number of SVIDs per BatchNewX509SVID request.
const batchSize = 8

// loadResult is what a closed-loop load run achieved.
type loadResult struct {
	ops     int64
	elapsed time.Duration
}

func (r loadResult) rate(perOp int) float64 {
	return float64(r.ops) * float64(perOp) / r.elapsed.Seconds()
}

// closedLoop runs conc workers calling op back to back until d has passed
// or maxOps calls were made, and returns how many succeeded. The first
// error stops the run.
func closedLoop(ctx context.Context, conc int, d time.Duration, maxOps int64, op func(ctx context.Context, worker int, i int64) error) (loadResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next, done atomic.Int64
	var firstErr error
	var once sync.Once
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := next.Add(1)
				if i > maxOps {
					return
				}
				if err := op(ctx, w, i); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	res := loadResult{ops: done.Load(), elapsed: time.Since(start)}
	if firstErr != nil {
		return res, firstErr
	}
	if res.ops == 0 {
		return res, errors.New("bench: no operation completed")
	}
	return res, ctx.Err()
}

// signingCeiling measures x509.CreateCertificate with an ECDSA P-256 CA
// over SVID-shaped templates: the most any X.509-SVID issuer in Go can do
// on this machine at this concurrency.
type signingCeiling struct {
	ca      *x509.Certificate
	caKey   crypto.Signer
	leafPub []crypto.PublicKey
}

func newSigningCeiling(leaves int) (*signingCeiling, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{"bench"}},
		URIs:                  []*url.URL{trustDomain.ID().URL()},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	s := &signingCeiling{ca: ca, caKey: key}
	for i := 0; i < leaves; i++ {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		s.leafPub = append(s.leafPub, k.Public())
	}
	return s, nil
}

func (s *signingCeiling) sign(_ context.Context, _ int, i int64) error {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return err
	}
	now := time.Now()
	id := spiffeid.RequireFromSegments(trustDomain, "bench", "ceiling", strconv.FormatInt(i%64, 10))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{"SPIRE"}},
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             now.Add(-10 * time.Second),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	_, err = x509.CreateCertificate(rand.Reader, tmpl, s.ca, s.leafPub[int(i)%len(s.leafPub)], s.caKey)
	return err
}

// mintCSRs returns n CSRs with a SPIFFE ID URI SAN each, for MintX509SVID
// (made once, so the client's key generation is not measured).
func mintCSRs(n int) ([][]byte, error) {
	var out [][]byte
	for i := 0; i < n; i++ {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		id := spiffeid.RequireFromSegments(trustDomain, "bench", "mint", strconv.Itoa(i))
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, k)
		if err != nil {
			return nil, err
		}
		out = append(out, der)
	}
	return out, nil
}

// plainCSRs returns n CSRs without names (the entry decides the SPIFFE ID
// for BatchNewX509SVID).
func plainCSRs(n int) ([][]byte, error) {
	var out [][]byte
	for i := 0; i < n; i++ {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
		if err != nil {
			return nil, err
		}
		out = append(out, der)
	}
	return out, nil
}

func mintOp(s *server, csrs [][]byte) func(context.Context, int, int64) error {
	client := svidv1.NewSVIDClient(s.admin)
	return func(ctx context.Context, _ int, i int64) error {
		resp, err := client.MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: csrs[int(i)%len(csrs)]})
		if err != nil {
			return fmt.Errorf("bench: %s MintX509SVID: %w", s.sys.name, err)
		}
		if len(resp.GetSvid().GetCertChain()) == 0 {
			return fmt.Errorf("bench: %s MintX509SVID returned no certificate", s.sys.name)
		}
		return nil
	}
}

// rawAgent is the harness acting as an agent: attested with a join token
// over the agent listener, it holds an agent SVID and calls the SVID API
// over mTLS like an agent does.
type rawAgent struct {
	conn    *grpc.ClientConn
	id      spiffeid.ID
	entries []string
	csrs    [][]byte
}

// attestRawAgent performs join-token attestation as an agent would and
// returns an mTLS connection authenticated by the new agent SVID.
func attestRawAgent(ctx context.Context, s *server) (*rawAgent, error) {
	roots, err := s.bundle(ctx)
	if err != nil {
		return nil, err
	}
	bundle := x509bundle.FromX509Authorities(trustDomain, roots)
	serverID := spiffeid.RequireFromPath(trustDomain, "/spire/server")
	token, err := s.token(ctx)
	if err != nil {
		return nil, err
	}
	tc := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(serverID))
	tc.MinVersion = tls.VersionTLS13
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return nil, fmt.Errorf("bench: dial %s: %w", s.sys.name, err)
	}
	defer conn.Close()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := agentv1.NewAgentClient(conn).AttestAgent(actx)
	if err != nil {
		return nil, fmt.Errorf("bench: %s AttestAgent: %w", s.sys.name, err)
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: "join_token", Payload: []byte(token)},
		Params: &agentv1.AgentX509SVIDParams{Csr: csr},
	}}}); err != nil {
		return nil, fmt.Errorf("bench: %s AttestAgent send: %w", s.sys.name, err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("bench: %s AttestAgent: %w", s.sys.name, err)
	}
	_ = stream.CloseSend()
	var chain []*x509.Certificate
	for _, der := range resp.GetResult().GetSvid().GetCertChain() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("bench: %s agent SVID: %w", s.sys.name, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("bench: %s AttestAgent returned no SVID", s.sys.name)
	}
	svid := &x509svid.SVID{ID: agentID(token), Certificates: chain, PrivateKey: key}
	mtc := tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(serverID))
	mtc.MinVersion = tls.VersionTLS13
	mconn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(mtc)))
	if err != nil {
		return nil, fmt.Errorf("bench: dial %s: %w", s.sys.name, err)
	}
	return &rawAgent{conn: mconn, id: svid.ID}, nil
}

// prepareBatch registers n entries parented to the raw agent and waits
// until the server authorizes the agent for all of them.
func (a *rawAgent) prepareBatch(ctx context.Context, s *server, n int) error {
	var entries []*types.Entry
	for i := 0; i < n; i++ {
		entries = append(entries, &types.Entry{
			SpiffeId:  protoID(spiffeid.RequireFromSegments(trustDomain, "bench", "batch", strconv.Itoa(i))),
			ParentId:  protoID(a.id),
			Selectors: []*types.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(4000000+i)}},
		})
	}
	created, err := s.createEntries(ctx, entries, 1000, 1)
	if err != nil {
		return err
	}
	for _, e := range created {
		a.entries = append(a.entries, e.Id)
	}
	if a.csrs, err = plainCSRs(batchSize); err != nil {
		return err
	}
	// SPIRE authorizes from an entry cache that reloads every few seconds.
	client := svidv1.NewSVIDClient(a.conn)
	return poll(ctx, 60*time.Second, 200*time.Millisecond, s.sys.name+" to authorize the batch entries", func() (bool, error) {
		req := &svidv1.BatchNewX509SVIDRequest{}
		for i, id := range a.entries {
			req.Params = append(req.Params, &svidv1.NewX509SVIDParams{EntryId: id, Csr: a.csrs[i%len(a.csrs)]})
		}
		resp, err := client.BatchNewX509SVID(ctx, req)
		if err != nil {
			return false, err
		}
		for _, r := range resp.Results {
			if c := codes.Code(r.GetStatus().GetCode()); c != codes.OK {
				return false, fmt.Errorf("%v %s", c, r.GetStatus().GetMessage())
			}
		}
		return true, nil
	})
}

func (a *rawAgent) batchOp(s *server) func(context.Context, int, int64) error {
	client := svidv1.NewSVIDClient(a.conn)
	return func(ctx context.Context, _ int, i int64) error {
		req := &svidv1.BatchNewX509SVIDRequest{}
		for j := 0; j < batchSize; j++ {
			id := a.entries[(int(i)*batchSize+j)%len(a.entries)]
			req.Params = append(req.Params, &svidv1.NewX509SVIDParams{EntryId: id, Csr: a.csrs[j]})
		}
		resp, err := client.BatchNewX509SVID(ctx, req)
		if err != nil {
			return fmt.Errorf("bench: %s BatchNewX509SVID: %w", s.sys.name, err)
		}
		for _, r := range resp.Results {
			if c := codes.Code(r.GetStatus().GetCode()); c != codes.OK {
				return fmt.Errorf("bench: %s BatchNewX509SVID: %v %s", s.sys.name, c, r.GetStatus().GetMessage())
			}
		}
		return nil
	}
}

func (a *rawAgent) close() {
	if a != nil && a.conn != nil {
		a.conn.Close()
	}
}
