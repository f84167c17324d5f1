package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/agent/client"
	"github.com/signet-id/signet/issuer"
	notifyv1 "github.com/signet-id/signet/proto/signet/notify/v1"
	"github.com/signet-id/signet/rotation/renewal"
	"github.com/signet-id/signet/spireid"
	"github.com/signet-id/signet/telemetry"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// errReattest means the server no longer accepts the agent SVID.
var errReattest = errors.New("agent: server refused the agent SVID")

// errRenewed ends a session after the agent SVID was renewed, so the next
// connection presents the new one.
var errRenewed = errors.New("agent: agent SVID renewed")

func (a *Agent) serverID() spiffeid.ID {
	return spireid.ServerID(a.cfg.TrustDomain)
}

// dial connects to addr, verifying the server against roots (or not at all
// when roots is nil and insecure bootstrap is allowed), and presenting
// client (if not nil).
func (a *Agent) dial(addr string, roots []*x509.Certificate, client *cache.X509SVID) (*grpc.ClientConn, error) {
	tc := a.baseTLS()
	tc.InsecureSkipVerify = true // verified below by SPIFFE ID, not hostname
	serverID := a.serverID()
	if roots != nil {
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return a.verifyServer(addr, raw, roots, serverID)
		}
	} else if !a.cfg.InsecureBootstrap {
		return nil, errors.New("agent: no trust bundle to verify the server: pass --trust-bundle (the server's bundle PEM) or --insecure-bootstrap")
	}
	if client != nil {
		cert := &tls.Certificate{PrivateKey: client.Key, Leaf: client.Chain[0]}
		for _, c := range client.Chain {
			cert.Certificate = append(cert.Certificate, c.Raw)
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	creds := kexObserver{TransportCredentials: credentials.NewTLS(tc), observe: func(id tls.CurveID) {
		a.m.kex.WithLabelValues(id.String()).Inc()
		a.log.Debug("server TLS handshake", "server", addr, "kex_group", id.String())
	}}
	// Entries arrive in pages through SyncAuthorizedEntries, but a server
	// without it sends them all in one GetAuthorizedEntries response:
	// allow that beyond gRPC's 4 MiB default.
	return grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxServerMessage)))
}

// verifyServer checks the server's certificate chain raw against roots and
// its SPIFFE ID against serverID. A chain the roots do not verify, or a
// verified certificate that is not the server's, is recorded in verifyErr:
// someone else may answer on the address (an interception, a reset
// server), and the agent keeps trying. A chain the roots verify whose ID
// is the server ID of another trust domain is an authenticated answer,
// recorded in wrongTD: retrying cannot help.
func (a *Agent) verifyServer(addr string, raw [][]byte, roots []*x509.Certificate, serverID spiffeid.ID) error {
	untrusted := func(err error) error {
		err = fmt.Errorf("agent: server %s: certificate: %w", addr, err)
		a.verifyErr.Store(&err)
		telemetry.SecurityEvent(context.Background(), a.log, telemetry.EventServerUntrusted,
			slog.String(telemetry.FieldPeer, addr), slog.String(telemetry.FieldReason, err.Error()))
		return err
	}
	if len(raw) == 0 {
		return untrusted(errors.New("no certificate"))
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return untrusted(err)
	}
	claimed, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return untrusted(err)
	}
	// Verify the chain against the agent's roots under whatever trust
	// domain the certificate names, then judge the name.
	b := x509bundle.FromX509Authorities(claimed.TrustDomain(), roots)
	id, _, err := x509svid.ParseAndVerify(raw, b)
	if err != nil {
		return untrusted(err)
	}
	if id.TrustDomain() != a.cfg.TrustDomain && id == spireid.ServerID(id.TrustDomain()) {
		err := fmt.Errorf("agent: the server at %s, verified by the agent's bundle, is in trust domain %q, but the agent is configured for %q: "+
			"set --trust-domain %s (trust_domain in the agent config)", addr, id.TrustDomain().Name(), a.cfg.TrustDomain.Name(), id.TrustDomain().Name())
		a.wrongTD.Store(&err)
		return err
	}
	if id != serverID {
		return untrusted(fmt.Errorf("presented %q, want %q", id, serverID))
	}
	return nil
}

// maxServerMessage bounds one message from the server (about 200k entries).
const maxServerMessage = 256 << 20

// kexObserver reports the key-exchange group of every client handshake.
type kexObserver struct {
	credentials.TransportCredentials
	observe func(tls.CurveID)
}

func (k kexObserver) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, ai, err := k.TransportCredentials.ClientHandshake(ctx, authority, conn)
	if err == nil {
		if ti, ok := ai.(credentials.TLSInfo); ok {
			k.observe(ti.State.CurveID)
		}
	}
	return nc, ai, err
}

func (k kexObserver) Clone() credentials.TransportCredentials {
	return kexObserver{TransportCredentials: k.TransportCredentials.Clone(), observe: k.observe}
}

// roots returns the X.509 authorities to verify the server with.
func (a *Agent) roots() []*x509.Certificate {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bundle != nil && len(a.bundle.X509Authorities()) > 0 {
		return a.bundle.X509Authorities()
	}
	if len(a.cfg.TrustBundle) > 0 {
		return a.cfg.TrustBundle
	}
	return nil
}

func parseChain(ders [][]byte, key crypto.Signer) (*cache.X509SVID, error) {
	if len(ders) == 0 {
		return nil, errors.New("agent: empty certificate chain")
	}
	var chain []*x509.Certificate
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("agent: parse SVID: %w", err)
		}
		chain = append(chain, c)
	}
	return &cache.X509SVID{Chain: chain, Key: key}, nil
}

// session runs one connection to a server until it fails or the agent SVID
// is renewed.
func (a *Agent) session(ctx context.Context) error {
	a.mu.Lock()
	addr := a.cfg.ServerAddresses[a.serverIdx%len(a.cfg.ServerAddresses)]
	svid := a.agentSVID
	a.mu.Unlock()
	if err := resolveServer(ctx, addr); err != nil {
		a.nextServer()
		return err
	}
	if svid == nil {
		if err := a.attest(ctx, addr); err != nil {
			a.nextServer()
			return err
		}
		a.mu.Lock()
		svid = a.agentSVID
		a.mu.Unlock()
	}
	conn, err := a.dial(addr, a.roots(), svid)
	if err != nil {
		return err
	}
	defer conn.Close()
	c := client.New(conn)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	a.conn = c
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		if a.conn == c {
			a.conn = nil
		}
		a.mu.Unlock()
	}()

	a.entriesChanged() // a new session starts with a full read
	watchErr := make(chan error, 1)
	// renewKick: the server asked for some SVIDs by entry ID, nothing else.
	renewKick := make(chan struct{}, 1)
	go func() { watchErr <- a.watch(ctx, c, renewKick) }()

	if err := a.sync(ctx, c); err != nil {
		a.nextServer()
		return classify(err)
	}
	a.sessionOK.Store(true)
	a.log.Info("connected to server", "server", addr, "agent_id", a.AgentID().String())
	ticker := a.cfg.Clock.NewTicker(a.cfg.SyncInterval)
	defer ticker.Stop()
	// retryAt holds off renewing SVIDs the server just refused.
	var retryAt time.Time
	for {
		renewAt := a.renewalTime(svid.Chain[0])
		wait := renewAt.Sub(a.cfg.Clock.Now())
		a.mu.Lock()
		renewSelf := a.renewSelf
		a.renewSelf = false
		a.mu.Unlock()
		if wait <= 0 || renewSelf {
			if err := a.renewAgent(ctx, c); err != nil {
				return classify(err)
			}
			return errRenewed
		}
		if next := a.nextWorkloadRenewal(); !next.IsZero() {
			if next.Before(retryAt) {
				next = retryAt
			}
			wait = min(wait, max(next.Sub(a.cfg.Clock.Now()), 10*time.Millisecond))
		}
		timer := a.cfg.Clock.NewTimer(min(wait, a.cfg.SyncInterval))
		renewOnly := false
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case err := <-watchErr:
			timer.Stop()
			a.nextServer()
			return classify(fmt.Errorf("agent: push stream: %w", err))
		case <-a.syncNow:
		case <-ticker.C():
			a.entriesChanged() // the fallback poll rereads everything
		case <-timer.C():
			renewOnly = true
		case <-renewKick:
			renewOnly = true
		case <-a.mintKick:
			renewOnly = true // a workload waits for SVIDs not minted yet
		}
		timer.Stop()
		if renewOnly {
			// A workload SVID is due: renew the due ones only, without
			// rereading the bundle and entries or checking every SVID.
			refused, err := a.renewDue(ctx, c)
			if err != nil {
				a.nextServer()
				return classify(err)
			}
			if refused {
				retryAt = a.cfg.Clock.Now().Add(renewRetry)
			}
			continue
		}
		if err := a.sync(ctx, c); err != nil {
			a.nextServer()
			return classify(err)
		}
	}
}

// resolveServer checks that addr's host resolves to at least one address,
// so a name that does not resolve is reported as such (gRPC would say
// only "produced zero addresses") and retried with backoff.
func resolveServer(ctx context.Context, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("agent: server address %q: %w (want host:port)", addr, err)
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err == nil && len(addrs) == 0 {
		err = errors.New("no addresses")
	}
	if err != nil {
		return fmt.Errorf("agent: server address %q does not resolve: %w (check --server-address or server_address)", addr, err)
	}
	return nil
}

func (a *Agent) nextServer() {
	a.mu.Lock()
	a.serverIdx++
	a.mu.Unlock()
}

func classify(err error) error {
	if status.Code(err) == codes.PermissionDenied || status.Code(errors.Unwrap(err)) == codes.PermissionDenied {
		return fmt.Errorf("%w: %w", errReattest, err)
	}
	return err
}

// watch receives push notifications and triggers syncs. A server without
// the signet.notify.v1 service (such as SPIRE) answers Unimplemented: the
// agent then keeps the session and relies on polling every SyncInterval, so
// watch returns only when ctx is done.
func (a *Agent) watch(ctx context.Context, c *client.Client, renewKick chan<- struct{}) error {
	defer a.pushLive.Store(false)
	stream, err := c.Watch(ctx)
	if err != nil {
		return a.watchFailed(ctx, err)
	}
	for {
		n, err := stream.Recv()
		if err != nil {
			return a.watchFailed(ctx, err)
		}
		a.m.pushes.WithLabelValues(n.Kind.String()).Inc()
		if n.Kind == notifyv1.Notification_KIND_RENEW_NOW {
			a.mu.Lock()
			if len(n.EntryIds) == 0 {
				a.forceAll = true
				a.renewSelf = true
			}
			for _, id := range n.EntryIds {
				if id == serverAgentEntry {
					a.renewSelf = true
					continue
				}
				a.force[id] = true
			}
			a.mu.Unlock()
			if len(n.EntryIds) > 0 {
				// Scheduled renewals of some SVIDs: renew those only.
				select {
				case renewKick <- struct{}{}:
				default:
				}
				continue
			}
		}
		if n.Kind == notifyv1.Notification_KIND_ENTRIES_CHANGED {
			a.entriesChanged()
		}
		if n.Kind == notifyv1.Notification_KIND_HELLO {
			a.pushLive.Store(true)
			continue
		}
		select {
		case a.syncNow <- struct{}{}:
		default:
		}
	}
}

// watchFailed returns err, unless the server does not serve push
// notifications: then it waits for ctx so the session goes on polling.
func (a *Agent) watchFailed(ctx context.Context, err error) error {
	if status.Code(err) != codes.Unimplemented {
		return err
	}
	a.log.Info("server has no push notification stream; polling for changes", "interval", a.cfg.SyncInterval.String())
	<-ctx.Done()
	return ctx.Err()
}

// renewalTime is when the agent renews an SVID on its own: at half-life
// when it hears nothing from a server, but while a push stream is live it
// leaves the (jittered, 50-80%) schedule to the server and only steps in
// at 85% of the lifetime.
func (a *Agent) renewalTime(c *x509.Certificate) time.Time {
	if !a.pushLive.Load() {
		return issuer.RenewalTime(c)
	}
	start := issuer.RenewalTime(c).Add(-c.NotAfter.Sub(issuer.RenewalTime(c)))
	return renewal.Default().PushedRenewAt(start, c.NotAfter)
}

// serverAgentEntry in a RENEW_NOW asks for the agent's own SVID.
const serverAgentEntry = notifyv1.AgentEntryID

func (a *Agent) renewAgent(ctx context.Context, c *client.Client) error {
	key, err := a.newKey()
	if err != nil {
		return err
	}
	csr, altKey, err := a.csr(key)
	if err != nil {
		return err
	}
	got, err := c.RenewAgent(ctx, csr)
	if err != nil {
		return fmt.Errorf("agent: renew agent SVID: %w", err)
	}
	svid, err := a.adoptAgentSVID(got.GetCertChain(), key, altKey)
	if err != nil {
		return err
	}
	a.m.agentRenewals.Inc()
	a.log.Info("agent SVID renewed", "expires_at", svid.Chain[0].NotAfter)
	return nil
}

// jwtMinter obtains JWT-SVIDs from the server for the cache.
type jwtMinter struct{ a *Agent }

func (m jwtMinter) MintJWTSVID(ctx context.Context, id spiffeid.ID, audience []string) (string, time.Time, error) {
	a := m.a
	a.mu.Lock()
	c := a.conn
	var entryID string
	for _, e := range a.entries {
		if "spiffe://"+e.SpiffeId.GetTrustDomain()+e.SpiffeId.GetPath() == id.String() {
			entryID = e.Id
			break
		}
	}
	a.mu.Unlock()
	if c == nil {
		return "", time.Time{}, errors.New("agent: not connected to a server; JWT-SVIDs cannot be minted offline")
	}
	if entryID == "" {
		return "", time.Time{}, fmt.Errorf("agent: no entry for %q", id)
	}
	svid, err := c.NewJWTSVID(ctx, entryID, audience)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("agent: mint JWT-SVID: %w", err)
	}
	return svid.GetToken(), time.Unix(svid.GetExpiresAt(), 0), nil
}

// nextWorkloadRenewal returns the earliest half-life among cached workload
// SVIDs, or the zero time if there are none.
func (a *Agent) nextWorkloadRenewal() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	var next time.Time
	for _, s := range a.svids {
		h := a.renewalTime(s.Chain[0])
		if next.IsZero() || h.Before(next) {
			next = h
		}
	}
	return next
}

// entriesChanged marks the held entries as possibly out of date.
func (a *Agent) entriesChanged() {
	a.mu.Lock()
	a.entriesGen++
	a.mu.Unlock()
}

// adoptAgentSVID makes the chain (with its keys) the agent's SVID, in
// memory and on disk.
func (a *Agent) adoptAgentSVID(chain [][]byte, key, altKey crypto.Signer) (*cache.X509SVID, error) {
	svid, err := parseChain(chain, key)
	if err != nil {
		return nil, err
	}
	svid.AltKey = altKey
	a.mu.Lock()
	a.agentSVID = svid
	a.mu.Unlock()
	if err := a.disk.saveAgentSVID(svid); err != nil {
		return nil, err
	}
	return svid, nil
}
