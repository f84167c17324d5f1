package server

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/issuer"
	"github.com/signet-id/signet/secrets"
	"github.com/signet-id/signet/secrets/vaultpki"
	"github.com/signet-id/signet/server/spireupstream"
)

var _ ca.UpstreamAuthority = (*spireupstream.Upstream)(nil)

// openCA builds the CA (state on disk, or sealed in a shared external
// etcd), the optional Vault client and upstream authority, the issuer and
// the server SVID. shared is set when the CA state is in etcd.
func (s *Server) openCA() (shared *etcdCAState, vc *secrets.Client, closeKM func(), err error) {
	closeKM = func() {}
	defer func() {
		if err != nil {
			closeKM()
		}
	}()
	var caStorage ca.Storage = ca.FileStorage{Path: filepath.Join(s.cfg.DataDir, "ca", "ca.json")}
	if len(s.cfg.Etcd.Endpoints) > 0 {
		kek, err := loadKEK(s.cfg.CAKEKFile)
		if err != nil {
			return nil, nil, closeKM, err
		}
		sealed, st, err := newEtcdCAStorage(s.etcd, s.keys().CAState(), kek)
		if err != nil {
			return nil, nil, closeKM, err
		}
		caStorage, shared = sealed, &st
	}
	var upstream ca.UpstreamAuthority
	if s.cfg.Vault != nil {
		if vc, err = s.newVaultClient(); err != nil {
			return nil, nil, closeKM, err
		}
		if m := s.cfg.Vault.UpstreamPKIMount; m != "" {
			up, err := vaultpki.New(vaultpki.Config{Client: vc, Mount: m})
			if err != nil {
				return nil, nil, closeKM, fmt.Errorf("server: %w", err)
			}
			upstream = vaultUpstream{up}
		}
	}
	if d := s.cfg.UpstreamDisk; d != nil {
		if upstream != nil {
			return nil, nil, closeKM, errors.New("server: two upstream authorities: UpstreamAuthority \"disk\" and vault { upstream_pki_mount }; keep one")
		}
		du, err := ca.LoadDiskUpstream(ca.DiskUpstreamConfig{CertFile: d.CertFile, KeyFile: d.KeyFile, BundleFile: d.BundleFile, Now: s.cfg.Clock.Now})
		if err != nil {
			return nil, nil, closeKM, fmt.Errorf("server: UpstreamAuthority \"disk\": %w", err)
		}
		upstream = du
	}
	if c := s.cfg.UpstreamSPIRE; c != nil {
		if upstream != nil {
			return nil, nil, closeKM, errors.New("server: two upstream authorities: UpstreamAuthority \"spire\" and another (UpstreamAuthority \"disk\" or vault { upstream_pki_mount }); keep one")
		}
		su, err := spireupstream.New(spireupstream.Config{ServerAddress: c.ServerAddress, ServerPort: c.ServerPort, WorkloadAPISocket: c.WorkloadAPISocket})
		if err != nil {
			return nil, nil, closeKM, fmt.Errorf("server: UpstreamAuthority \"spire\": %w", err)
		}
		upstream = su
	}
	km, closer, err := s.openKeyManager(vc)
	if err != nil {
		return nil, nil, closeKM, err
	}
	closeKM = closer
	s.ca, err = ca.New(ca.Config{
		TrustDomain: s.cfg.TrustDomain,
		Storage:     caStorage,
		Upstream:    upstream,
		KeyManager:  km,
		CATTL:       s.cfg.CATTL,
		Profile:     s.cfg.Profile,
		Now:         s.cfg.Clock.Now,
		Logger:      s.log,
	})
	if err != nil {
		return nil, nil, closeKM, fmt.Errorf("server: %w", err)
	}
	s.issuer, err = issuer.New(issuer.Config{
		TrustDomain: s.cfg.TrustDomain,
		Authority:   s.ca,
		X509TTL:     s.cfg.X509SVIDTTL,
		JWTTTL:      s.cfg.JWTSVIDTTL,
		JWTIssuer:   s.jwtIssuer(),
		Now:         s.cfg.Clock.Now,
	})
	if err != nil {
		return nil, nil, closeKM, fmt.Errorf("server: %w", err)
	}
	if err := s.rotateServerSVID(); err != nil {
		return nil, nil, closeKM, err
	}
	s.writeBundleFile()
	first := snapshotAuthorities(s.ca)
	s.lastAuthorities = first
	s.authorities.Store(&first)
	return shared, vc, closeKM, nil
}
