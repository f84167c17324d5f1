// Package localauthority implements SPIRE's LocalAuthority API
// (spire.api.server.localauthority.v1) over Signet's CA manager — prepare,
// activate, taint and revoke the X.509 CA and the JWT signing keys, with
// SPIRE's status codes and messages — and Signet's signet.ca.v1 service,
// which lists every authority with its taint and counts the SVIDs an
// authority still signs (for `signet ca taint --wait`). Every change is
// pushed to agents; a taint makes them renew every SVID at once.
package localauthority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/signet-id/signet/ca"
	cav1 "github.com/signet-id/signet/proto/signet/ca/v1"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// CA is the lifecycle the service administers (ca.Manager).
type CA interface {
	X509Authorities() []ca.AuthorityInfo
	JWTAuthorities() []ca.AuthorityInfo
	PrepareX509() (ca.AuthorityInfo, error)
	ActivateX509(authorityID string) (ca.AuthorityInfo, error)
	TaintX509(authorityID string) (ca.AuthorityInfo, error)
	RevokeX509(authorityID string) (ca.AuthorityInfo, error)
	PrepareJWT() (ca.AuthorityInfo, error)
	ActivateJWT(authorityID string) (ca.AuthorityInfo, error)
	TaintJWT(authorityID string) (ca.AuthorityInfo, error)
	RevokeJWT(authorityID string) (ca.AuthorityInfo, error)
	IsUpstreamAuthority() bool
	TaintX509Upstream(subjectKeyID string) ([]ca.AuthorityInfo, error)
	RevokeX509Upstream(subjectKeyID string) ([]ca.AuthorityInfo, error)
	Bundle() *spiffebundle.Bundle
}

var _ CA = (*ca.Manager)(nil)

// Notifier pushes changes to connected agents (notify.Hub).
type Notifier interface {
	// BundleChanged tells every agent to refetch the bundle.
	BundleChanged(seq uint64)
	// RenewNow tells every agent to renew all its SVIDs now.
	RenewNow(ctx context.Context)
}

// Counter counts the X.509-SVIDs held by agents that an authority signed
// (store.SVIDTracker).
type Counter interface {
	CountSVIDsByAuthority(ctx context.Context, authorityID string, now time.Time) (int, error)
}

// Events receives lifecycle events for the rotation event log. kind is one
// of the eventlog.KindCA* and eventlog.KindJWTKey* kinds.
type Events interface {
	AuthorityChanged(ctx context.Context, kind eventlog.Kind, a ca.AuthorityInfo)
}

// Config configures the services.
type Config struct {
	CA CA
	// Notifier is optional; without it agents learn of changes by polling.
	Notifier Notifier
	// Counter is optional; without it CountSVIDsByAuthority is
	// Unimplemented.
	Counter Counter
	// Events is optional.
	Events Events
	Now    func() time.Time
	Logger *slog.Logger
}

// Service implements localauthorityv1.LocalAuthorityServer.
type Service struct {
	localauthorityv1.UnsafeLocalAuthorityServer
	cfg Config
}

var _ localauthorityv1.LocalAuthorityServer = (*Service)(nil)

// CAService implements cav1.CAServer.
type CAService struct {
	cav1.UnsafeCAServer
	cfg Config
}

var _ cav1.CAServer = (*CAService)(nil)

// New returns the LocalAuthority service.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg}
}

// CAService returns the signet.ca.v1 service over the same configuration.
func (s *Service) CAService() *CAService { return &CAService{cfg: s.cfg} }

// Register registers both services on g.
func (s *Service) Register(g grpc.ServiceRegistrar) {
	localauthorityv1.RegisterLocalAuthorityServer(g, s)
	cav1.RegisterCAServer(g, s.CAService())
}

// spireStatus names a status as SPIRE's journal does.
func spireStatus(st ca.Status) string { return strings.ToUpper(string(st)) }

func state(a ca.AuthorityInfo) *localauthorityv1.AuthorityState {
	return &localauthorityv1.AuthorityState{AuthorityId: a.ID, ExpiresAt: a.NotAfter.Unix(), UpstreamAuthoritySubjectKeyId: a.UpstreamAuthorityID}
}

// current returns the active authority and the newest prepared and old
// ones (nil when there are none) of a newest-first list.
func current(list []ca.AuthorityInfo) (active, prepared, old *ca.AuthorityInfo) {
	for i := range list {
		a := &list[i]
		switch {
		case a.Status == ca.StatusActive && active == nil:
			active = a
		case a.Status == ca.StatusPrepared && prepared == nil:
			prepared = a
		case a.Status == ca.StatusOld && old == nil:
			old = a
		}
	}
	return active, prepared, old
}

func (s *Service) authorityState(ctx context.Context, list []ca.AuthorityInfo) (active, prepared, old *localauthorityv1.AuthorityState, err error) {
	a, p, o := current(list)
	if a == nil {
		return nil, nil, nil, s.fail(ctx, codes.Unavailable, "server is initializing", "", nil)
	}
	active = state(*a)
	if p != nil {
		prepared = state(*p)
	}
	if o != nil {
		old = state(*o)
	}
	return active, prepared, old, nil
}

// fail logs and returns a status error "msg" or "msg: cause", as SPIRE's
// api.MakeErr does.
func (s *Service) fail(_ context.Context, code codes.Code, msg, authorityID string, cause error) error {
	log := s.cfg.Logger
	if authorityID != "" {
		log = log.With("authority_id", authorityID)
	}
	text := msg
	if cause != nil {
		text = msg + ": " + status.Convert(cause).Message()
		log = log.With("error", cause)
	}
	switch code {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.Unavailable:
		log.Info("local authority request refused", "code", code.String(), "reason", msg)
	default:
		log.Error("local authority request failed", "code", code.String(), "reason", msg)
	}
	return status.Error(code, text)
}

// changed publishes the new bundle to agents and records the event.
func (s *Service) changed(ctx context.Context, kind eventlog.Kind, a ca.AuthorityInfo) {
	if s.cfg.Notifier != nil {
		seq, _ := s.cfg.CA.Bundle().SequenceNumber()
		s.cfg.Notifier.BundleChanged(seq)
	}
	if s.cfg.Events != nil {
		s.cfg.Events.AuthorityChanged(ctx, kind, a)
	}
	s.cfg.Logger.Info("local authority changed", "event", kind, "authority_id", a.ID, "expires_at", a.NotAfter)
}

// refusal returns the reason of a *ca.TransitionError, or nil.
func refusal(err error) *ca.TransitionError {
	var te *ca.TransitionError
	if errors.As(err, &te) {
		return te
	}
	return nil
}

// --- JWT ---

// GetJWTAuthorityState reports the active, prepared and old JWT keys.
func (s *Service) GetJWTAuthorityState(ctx context.Context, _ *localauthorityv1.GetJWTAuthorityStateRequest) (*localauthorityv1.GetJWTAuthorityStateResponse, error) {
	a, p, o, err := s.authorityState(ctx, s.cfg.CA.JWTAuthorities())
	if err != nil {
		return nil, err
	}
	return &localauthorityv1.GetJWTAuthorityStateResponse{Active: a, Prepared: p, Old: o}, nil
}

// PrepareJWTAuthority prepares the next JWT key.
func (s *Service) PrepareJWTAuthority(ctx context.Context, _ *localauthorityv1.PrepareJWTAuthorityRequest) (*localauthorityv1.PrepareJWTAuthorityResponse, error) {
	if a, _, _ := current(s.cfg.CA.JWTAuthorities()); a == nil {
		return nil, s.fail(ctx, codes.Unavailable, "server is initializing", "", nil)
	}
	info, err := s.cfg.CA.PrepareJWT()
	if err != nil {
		return nil, s.fail(ctx, codes.Internal, "failed to prepare JWT authority", "", err)
	}
	s.changed(ctx, eventlog.KindJWTKeyPrepared, info)
	return &localauthorityv1.PrepareJWTAuthorityResponse{PreparedAuthority: state(info)}, nil
}

// ActivateJWTAuthority makes the prepared JWT key active.
func (s *Service) ActivateJWTAuthority(ctx context.Context, req *localauthorityv1.ActivateJWTAuthorityRequest) (*localauthorityv1.ActivateJWTAuthorityResponse, error) {
	info, err := s.cfg.CA.ActivateJWT(req.AuthorityId)
	if err != nil {
		return nil, s.activateErr(ctx, "JWT", req.AuthorityId, err)
	}
	s.changed(ctx, eventlog.KindJWTKeyActivated, info)
	return &localauthorityv1.ActivateJWTAuthorityResponse{ActivatedAuthority: state(info)}, nil
}

// TaintJWTAuthority marks the old JWT key tainted.
func (s *Service) TaintJWTAuthority(ctx context.Context, req *localauthorityv1.TaintJWTAuthorityRequest) (*localauthorityv1.TaintJWTAuthorityResponse, error) {
	info, err := s.cfg.CA.TaintJWT(req.AuthorityId)
	if err != nil {
		return nil, s.taintErr(ctx, "JWT", "key is already tainted", req.AuthorityId, err)
	}
	s.tainted(ctx, eventlog.KindJWTKeyTainted, info)
	return &localauthorityv1.TaintJWTAuthorityResponse{TaintedAuthority: &localauthorityv1.AuthorityState{AuthorityId: info.ID}}, nil
}

// RevokeJWTAuthority removes a tainted JWT key from the bundle.
func (s *Service) RevokeJWTAuthority(ctx context.Context, req *localauthorityv1.RevokeJWTAuthorityRequest) (*localauthorityv1.RevokeJWTAuthorityResponse, error) {
	info, err := s.cfg.CA.RevokeJWT(req.AuthorityId)
	if err != nil {
		if te := refusal(err); te != nil {
			reason := map[error]string{
				ca.ErrNoAuthorityID:     "no authority ID provided",
				ca.ErrActiveAuthority:   "unable to use current authority",
				ca.ErrNotOld:            "unable to use a prepared key",
				ca.ErrAuthorityNotFound: "no JWT authority found with provided authority ID",
			}[te.Err]
			if reason != "" {
				return nil, s.fail(ctx, codes.InvalidArgument, "invalid authority ID", req.AuthorityId, errors.New(reason))
			}
			if errors.Is(err, ca.ErrNotTainted) {
				return nil, s.fail(ctx, codes.Internal, "failed to revoke JWT authority", req.AuthorityId, errors.New("it is not possible to revoke an untainted key"))
			}
		}
		return nil, s.fail(ctx, codes.Internal, "failed to revoke JWT authority", req.AuthorityId, err)
	}
	s.changed(ctx, eventlog.KindJWTKeyRevoked, info)
	return &localauthorityv1.RevokeJWTAuthorityResponse{RevokedAuthority: &localauthorityv1.AuthorityState{AuthorityId: info.ID}}, nil
}

// --- X.509 ---

// GetX509AuthorityState reports the active, prepared and old X.509 CAs.
func (s *Service) GetX509AuthorityState(ctx context.Context, _ *localauthorityv1.GetX509AuthorityStateRequest) (*localauthorityv1.GetX509AuthorityStateResponse, error) {
	a, p, o, err := s.authorityState(ctx, s.cfg.CA.X509Authorities())
	if err != nil {
		return nil, err
	}
	return &localauthorityv1.GetX509AuthorityStateResponse{Active: a, Prepared: p, Old: o}, nil
}

// PrepareX509Authority prepares the next X.509 CA.
func (s *Service) PrepareX509Authority(ctx context.Context, _ *localauthorityv1.PrepareX509AuthorityRequest) (*localauthorityv1.PrepareX509AuthorityResponse, error) {
	if a, _, _ := current(s.cfg.CA.X509Authorities()); a == nil {
		return nil, s.fail(ctx, codes.Unavailable, "server is initializing", "", nil)
	}
	info, err := s.cfg.CA.PrepareX509()
	if err != nil {
		return nil, s.fail(ctx, codes.Internal, "failed to prepare X.509 authority", "", err)
	}
	s.changed(ctx, eventlog.KindCAPrepared, info)
	return &localauthorityv1.PrepareX509AuthorityResponse{PreparedAuthority: state(info)}, nil
}

// ActivateX509Authority makes the prepared X.509 CA active.
func (s *Service) ActivateX509Authority(ctx context.Context, req *localauthorityv1.ActivateX509AuthorityRequest) (*localauthorityv1.ActivateX509AuthorityResponse, error) {
	info, err := s.cfg.CA.ActivateX509(req.AuthorityId)
	if err != nil {
		return nil, s.activateErr(ctx, "X.509", req.AuthorityId, err)
	}
	s.changed(ctx, eventlog.KindCAActivated, info)
	return &localauthorityv1.ActivateX509AuthorityResponse{ActivatedAuthority: state(info)}, nil
}

// TaintX509Authority marks the old X.509 CA tainted, so SVIDs it signed
// are replaced.
func (s *Service) TaintX509Authority(ctx context.Context, req *localauthorityv1.TaintX509AuthorityRequest) (*localauthorityv1.TaintX509AuthorityResponse, error) {
	if s.cfg.CA.IsUpstreamAuthority() {
		return nil, s.fail(ctx, codes.FailedPrecondition, "local authority can't be tainted if there is an upstream authority", req.AuthorityId, nil)
	}
	info, err := s.cfg.CA.TaintX509(req.AuthorityId)
	if err != nil {
		return nil, s.taintErr(ctx, "X.509", "root CA is already tainted", req.AuthorityId, err)
	}
	s.tainted(ctx, eventlog.KindCATainted, info)
	return &localauthorityv1.TaintX509AuthorityResponse{TaintedAuthority: state(info)}, nil
}

// TaintX509UpstreamAuthority taints the old X.509 authorities signed by
// the upstream authority with the given subject key ID, as SPIRE does.
func (s *Service) TaintX509UpstreamAuthority(ctx context.Context, req *localauthorityv1.TaintX509UpstreamAuthorityRequest) (*localauthorityv1.TaintX509UpstreamAuthorityResponse, error) {
	infos, err := s.cfg.CA.TaintX509Upstream(req.SubjectKeyId)
	if err != nil {
		return nil, s.upstreamErr(ctx, "provided subject key id is not valid", "failed to taint upstream authority", req.SubjectKeyId, err)
	}
	for _, info := range infos {
		s.changed(ctx, eventlog.KindCATainted, info)
	}
	if s.cfg.Notifier != nil {
		s.cfg.Notifier.RenewNow(ctx)
	}
	return &localauthorityv1.TaintX509UpstreamAuthorityResponse{UpstreamAuthoritySubjectKeyId: strings.ToLower(req.SubjectKeyId)}, nil
}

// RevokeX509Authority removes a tainted X.509 CA from the bundle.
func (s *Service) RevokeX509Authority(ctx context.Context, req *localauthorityv1.RevokeX509AuthorityRequest) (*localauthorityv1.RevokeX509AuthorityResponse, error) {
	if s.cfg.CA.IsUpstreamAuthority() {
		return nil, s.fail(ctx, codes.FailedPrecondition, "local authority can't be revoked if there is an upstream authority", req.AuthorityId, nil)
	}
	info, err := s.cfg.CA.RevokeX509(req.AuthorityId)
	if err != nil {
		if te := refusal(err); te != nil {
			reason := map[error]string{
				ca.ErrNoAuthorityID:     "no authority ID provided",
				ca.ErrActiveAuthority:   "unable to use current authority",
				ca.ErrNotOld:            "only Old local authority can be revoked",
				ca.ErrAuthorityNotFound: "only Old local authority can be revoked",
			}[te.Err]
			if reason != "" {
				return nil, s.fail(ctx, codes.InvalidArgument, "invalid authority ID", req.AuthorityId, errors.New(reason))
			}
			if errors.Is(err, ca.ErrNotTainted) {
				return nil, s.fail(ctx, codes.Internal, "failed to revoke X.509 authority", req.AuthorityId, errors.New("it is not possible to revoke an untainted root CA"))
			}
		}
		return nil, s.fail(ctx, codes.Internal, "failed to revoke X.509 authority", req.AuthorityId, err)
	}
	s.changed(ctx, eventlog.KindCARevoked, info)
	return &localauthorityv1.RevokeX509AuthorityResponse{RevokedAuthority: &localauthorityv1.AuthorityState{AuthorityId: info.ID}}, nil
}

// RevokeX509UpstreamAuthority removes the old X.509 authorities signed by
// the tainted upstream authority with the given subject key ID, as SPIRE
// does.
func (s *Service) RevokeX509UpstreamAuthority(ctx context.Context, req *localauthorityv1.RevokeX509UpstreamAuthorityRequest) (*localauthorityv1.RevokeX509UpstreamAuthorityResponse, error) {
	infos, err := s.cfg.CA.RevokeX509Upstream(req.SubjectKeyId)
	if err != nil {
		return nil, s.upstreamErr(ctx, "invalid subject key ID", "failed to revoke X.509 upstream authority", req.SubjectKeyId, err)
	}
	for _, info := range infos {
		s.changed(ctx, eventlog.KindCARevoked, info)
	}
	return &localauthorityv1.RevokeX509UpstreamAuthorityResponse{UpstreamAuthoritySubjectKeyId: strings.ToLower(req.SubjectKeyId)}, nil
}

// upstreamErr maps a refused upstream taint or revocation to SPIRE's
// answer: invalid is the message for a subject key ID that does not
// apply, failed the one for a state that does not allow the operation.
func (s *Service) upstreamErr(ctx context.Context, invalid, failed, skid string, err error) error {
	if refusal(err) == nil {
		return s.fail(ctx, codes.Internal, failed, skid, err)
	}
	reason := map[error]string{
		ca.ErrNoAuthorityID:     "no subject key ID provided",
		ca.ErrSignsActive:       "unable to use upstream authority signing current authority",
		ca.ErrAuthorityNotFound: "upstream authority didn't sign the old local authority",
		ca.ErrNotOld:            "only upstream authorities signing an old authority can be used",
	}
	for sentinel, why := range reason {
		if errors.Is(err, sentinel) {
			return s.fail(ctx, codes.InvalidArgument, invalid, skid, errors.New(why))
		}
	}
	switch {
	case errors.Is(err, ca.ErrNoUpstreamAuthority):
		return s.fail(ctx, codes.FailedPrecondition, "upstream authority is not configured", skid, nil)
	case errors.Is(err, ca.ErrAlreadyTainted):
		return s.fail(ctx, codes.Internal, failed, skid, errors.New("root CA is already tainted"))
	case errors.Is(err, ca.ErrNotTainted):
		return s.fail(ctx, codes.Internal, failed, skid, errors.New("it is not possible to revoke an untainted root CA"))
	}
	return s.fail(ctx, codes.Internal, failed, skid, err)
}

// --- shared error mapping and taint push ---

// activateErr maps a refused activation to SPIRE's answer.
func (s *Service) activateErr(ctx context.Context, kind, id string, err error) error {
	te := refusal(err)
	switch {
	case te == nil:
		return s.fail(ctx, codes.Internal, "failed to activate "+kind+" authority", id, err)
	case errors.Is(err, ca.ErrNoAuthorityID):
		return s.fail(ctx, codes.InvalidArgument, "no authority ID provided", id, nil)
	case errors.Is(err, ca.ErrNotPrepared):
		return s.fail(ctx, codes.Internal, "only Prepared authorities can be activated", id,
			fmt.Errorf("unsupported local authority status: %s", spireStatus(te.Status)))
	default: // unknown, or the active one: not the next authority
		return s.fail(ctx, codes.InvalidArgument, "unexpected authority ID", id, nil)
	}
}

// taintErr maps a refused taint to SPIRE's answer.
func (s *Service) taintErr(ctx context.Context, kind, alreadyTainted, id string, err error) error {
	te := refusal(err)
	switch {
	case te == nil:
		return s.fail(ctx, codes.Internal, "failed to taint "+kind+" authority", id, err)
	case errors.Is(err, ca.ErrNoAuthorityID):
		return s.fail(ctx, codes.InvalidArgument, "no authority ID provided", id, nil)
	case errors.Is(err, ca.ErrActiveAuthority):
		return s.fail(ctx, codes.InvalidArgument, "unable to taint current local authority", id, nil)
	case errors.Is(err, ca.ErrNotOld):
		return s.fail(ctx, codes.InvalidArgument, "only Old local authorities can be tainted", id,
			fmt.Errorf("unsupported local authority status: %s", spireStatus(te.Status)))
	case errors.Is(err, ca.ErrAlreadyTainted):
		return s.fail(ctx, codes.Internal, "failed to taint "+kind+" authority", id, errors.New(alreadyTainted))
	default:
		return s.fail(ctx, codes.InvalidArgument, "unexpected authority ID", id, nil)
	}
}

// tainted publishes the bundle and makes every agent renew every SVID now:
// whatever the tainted authority signed is replaced by the active one.
func (s *Service) tainted(ctx context.Context, kind eventlog.Kind, info ca.AuthorityInfo) {
	s.changed(ctx, kind, info)
	if s.cfg.Notifier != nil {
		s.cfg.Notifier.RenewNow(ctx)
	}
}

// --- signet.ca.v1 ---

func toProto(list []ca.AuthorityInfo) []*cav1.Authority {
	out := make([]*cav1.Authority, 0, len(list))
	for _, a := range list {
		st := cav1.Authority_STATUS_UNSPECIFIED
		switch a.Status {
		case ca.StatusPrepared:
			st = cav1.Authority_STATUS_PREPARED
		case ca.StatusActive:
			st = cav1.Authority_STATUS_ACTIVE
		case ca.StatusOld:
			st = cav1.Authority_STATUS_OLD
		}
		out = append(out, &cav1.Authority{
			AuthorityId: a.ID, Status: st, Tainted: a.Tainted,
			NotBefore: a.NotBefore.Unix(), ExpiresAt: a.NotAfter.Unix(),
			KeyManager: a.KeyManager, KeyUri: a.KeyURI, AltKeyLocation: a.AltKeyLocation,
		})
	}
	return out
}

// ListAuthorities returns every authority, newest first.
func (c *CAService) ListAuthorities(context.Context, *cav1.ListAuthoritiesRequest) (*cav1.ListAuthoritiesResponse, error) {
	seq, _ := c.cfg.CA.Bundle().SequenceNumber()
	return &cav1.ListAuthoritiesResponse{
		X509Authorities: toProto(c.cfg.CA.X509Authorities()),
		JwtAuthorities:  toProto(c.cfg.CA.JWTAuthorities()),
		BundleSequence:  seq,
	}, nil
}

// CountSVIDsByAuthority counts the SVIDs held by agents that the
// authority signed and that are still in use.
func (c *CAService) CountSVIDsByAuthority(ctx context.Context, req *cav1.CountSVIDsByAuthorityRequest) (*cav1.CountSVIDsByAuthorityResponse, error) {
	if req.AuthorityId == "" {
		return nil, status.Error(codes.InvalidArgument, "no authority ID provided")
	}
	id := strings.ToLower(req.AuthorityId)
	if strings.Trim(id, "0123456789abcdef") != "" {
		return nil, status.Errorf(codes.InvalidArgument, "invalid authority ID %q: want the hex subject key ID of an X.509 authority", req.AuthorityId)
	}
	if c.cfg.Counter == nil {
		return nil, status.Error(codes.Unimplemented, "this server does not track issued SVIDs")
	}
	n, err := c.cfg.Counter.CountSVIDsByAuthority(ctx, id, c.cfg.Now())
	if err != nil {
		c.cfg.Logger.Error("counting SVIDs by authority failed", "authority_id", req.AuthorityId, "error", err)
		return nil, status.Errorf(codes.Internal, "failed to count SVIDs: %v", err)
	}
	return &cav1.CountSVIDsByAuthorityResponse{Count: int64(n)}, nil
}
