package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"

	"github.com/signet-id/signet/tlspolicy"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
)

// TLSPolicy is the key-exchange policy of the server's TLS endpoints (the
// agent listener and the https_spiffe bundle endpoint; public endpoints use
// tlspolicy.Public): tlspolicy's, shared with the agent.
type TLSPolicy = tlspolicy.Policy

// agentTLSConfig builds the agent listener's TLS configuration: TLS 1.3
// only, the server's current SVID, and client SVIDs (optional, because
// attestation comes before an agent has one) verified against the current
// bundle.
func (s *Server) agentTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:       tlspolicy.MinVersion,
		CurvePreferences: s.cfg.TLS.CurvePreferences(),
		GetCertificate:   s.svidCertificate,
		ClientAuth:       tls.RequestClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return nil
			}
			chain := make([]*x509.Certificate, 0, len(raw))
			for _, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return fmt.Errorf("server: client certificate: %w", err)
				}
				chain = append(chain, c)
			}
			if _, _, err := x509svid.Verify(chain, s.ca.Bundle()); err != nil {
				return fmt.Errorf("server: client SVID: %w", err)
			}
			return nil
		},
	}
}

// kexCreds wraps TLS transport credentials to log and count the key
// exchange group each handshake negotiated.
type kexCreds struct {
	credentials.TransportCredentials
	observe func(tls.CurveID)
}

func (c kexCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, ai, err := c.TransportCredentials.ServerHandshake(conn)
	if err == nil {
		if ti, ok := ai.(credentials.TLSInfo); ok {
			c.observe(ti.State.CurveID)
		}
	}
	return nc, ai, err
}

func (c kexCreds) Clone() credentials.TransportCredentials {
	return kexCreds{TransportCredentials: c.TransportCredentials.Clone(), observe: c.observe}
}
