// Package spireupstream is SPIRE's UpstreamAuthority "spire" for Signet: a
// SPIRE server signs Signet's intermediate CA through a downstream entry.
package spireupstream

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc"
)

// ErrImpostor is returned when the upstream server presents an X509-SVID
// that is not spiffe://<trust domain>/spire/server.
var ErrImpostor = errors.New("the upstream server is not the trust domain's SPIRE server")

// ErrTrustDomainMismatch is returned when the Workload API serves an
// X509-SVID of another trust domain than the server's.
var ErrTrustDomainMismatch = errors.New("trust domain mismatch")

// Config locates the upstream SPIRE server and the local Workload API that
// hands out the downstream X509-SVID, as SPIRE's plugin_data does.
type Config struct {
	// ServerAddress and ServerPort reach the upstream spire-server.
	ServerAddress string
	ServerPort    int
	// WorkloadAPISocket is the path of a Workload API socket (a
	// spire-agent or a Signet agent) serving an entry with downstream = true
	// for this server.
	WorkloadAPISocket string
}

// Upstream asks an upstream SPIRE server to sign Signet's intermediate CA.
type Upstream struct {
	cfg Config
}

// New checks cfg; it dials nothing until the first signing.
func New(cfg Config) (*Upstream, error) {
	switch {
	case cfg.ServerAddress == "":
		return nil, errors.New("spireupstream: server_address is required")
	case cfg.ServerPort <= 0 || cfg.ServerPort > 65535:
		return nil, fmt.Errorf("spireupstream: server_port %d is not a TCP port", cfg.ServerPort)
	case cfg.WorkloadAPISocket == "":
		return nil, errors.New("spireupstream: workload_api_socket is required")
	}
	return &Upstream{cfg: cfg}, nil
}

// SignIntermediate fetches this server's downstream X509-SVID from the
// Workload API, dials the upstream server with it (authorising
// spiffe://<its trust domain>/spire/server) and calls NewDownstreamX509CA.
// It returns the CA chain (the new CA first) and the upstream X.509 roots.
//
// It refuses an X509-SVID of another trust domain than td (nesting is
// within one trust domain, as in SPIRE), and an upstream that presents any
// other SPIFFE ID than the server ID (ErrImpostor).
func (u *Upstream) SignIntermediate(ctx context.Context, td spiffeid.TrustDomain, csrDER []byte, ttl time.Duration) (chain, roots []*x509.Certificate, err error) {
	if _, err := os.Stat(u.cfg.WorkloadAPISocket); err != nil {
		return nil, nil, fmt.Errorf("spireupstream: workload_api_socket: %w (start the agent that serves this server's downstream entry first)", err)
	}
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+u.cfg.WorkloadAPISocket)))
	if err != nil {
		return nil, nil, fmt.Errorf("spireupstream: fetch the downstream X509-SVID from the Workload API at %s: %w", u.cfg.WorkloadAPISocket, err)
	}
	defer src.Close()
	svid, err := src.GetX509SVID()
	if err != nil {
		return nil, nil, fmt.Errorf("spireupstream: downstream X509-SVID: %w", err)
	}
	if !td.IsZero() && svid.ID.TrustDomain() != td {
		return nil, nil, fmt.Errorf("spireupstream: the Workload API at %s serves %s, of trust domain %q, not of this server's trust domain %q: %w",
			u.cfg.WorkloadAPISocket, svid.ID, svid.ID.TrustDomain().Name(), td.Name(), ErrTrustDomainMismatch)
	}
	serverID, err := spiffeid.FromPath(svid.ID.TrustDomain(), "/spire/server")
	if err != nil {
		return nil, nil, fmt.Errorf("spireupstream: upstream server ID: %w", err)
	}
	addr := net.JoinHostPort(u.cfg.ServerAddress, strconv.Itoa(u.cfg.ServerPort))
	auth := &serverAuthorizer{want: serverID}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(grpccredentials.MTLSClientCredentials(src, src, auth.authorize)))
	if err != nil {
		return nil, nil, fmt.Errorf("spireupstream: dial upstream server %s: %w", addr, err)
	}
	defer conn.Close()
	resp, err := svidv1.NewSVIDClient(conn).NewDownstreamX509CA(ctx, &svidv1.NewDownstreamX509CARequest{
		Csr:          csrDER,
		PreferredTtl: int32(ttl / time.Second),
	})
	if got, bad := auth.refused(); bad {
		return nil, nil, fmt.Errorf("spireupstream: upstream server %s presented %s, not %s: %w", addr, got, serverID, ErrImpostor)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("spireupstream: upstream server %s: NewDownstreamX509CA as %s: %w", addr, svid.ID, err)
	}
	if chain, err = parseAll(resp.GetCaCertChain()); err != nil {
		return nil, nil, fmt.Errorf("spireupstream: ca_cert_chain: %w", err)
	}
	if roots, err = parseAll(resp.GetX509Authorities()); err != nil {
		return nil, nil, fmt.Errorf("spireupstream: x509_authorities: %w", err)
	}
	return chain, roots, nil
}

// serverAuthorizer authorizes the upstream server's SVID and remembers
// the ID it refused.
type serverAuthorizer struct {
	want spiffeid.ID
	mu   sync.Mutex
	got  spiffeid.ID
	bad  bool
}

func (a *serverAuthorizer) authorize(id spiffeid.ID, chains [][]*x509.Certificate) error {
	if err := tlsconfig.AuthorizeID(a.want)(id, chains); err != nil {
		a.mu.Lock()
		a.got, a.bad = id, true
		a.mu.Unlock()
		return err
	}
	return nil
}

func (a *serverAuthorizer) refused() (spiffeid.ID, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.got, a.bad
}

func parseAll(ders [][]byte) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(ders))
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i, err)
		}
		out = append(out, c)
	}
	return out, nil
}
