package agent

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/signet-id/signet/agent/cache"
	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/privdir"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/encoding/protojson"
)

// diskState persists the agent's credentials in its data directory. Files
// holding private keys are written atomically with mode 0600.
type diskState struct {
	dir string
}

const (
	agentSVIDFile = "agent-svid.json"
	cacheFile     = "svid-cache.json"
	diskVersion   = 1
)

type diskSVID struct {
	Chain  [][]byte `json:"chain"`
	Key    []byte   `json:"key"`
	AltKey []byte   `json:"alt_key,omitempty"`
}

type diskCache struct {
	Version   int                        `json:"version"`
	Bundle    json.RawMessage            `json:"bundle,omitempty"`
	Federated map[string]json.RawMessage `json:"federated,omitempty"`
	Entries   []json.RawMessage          `json:"entries"`
	SVIDs     map[string]diskSVID        `json:"svids"`
}

// persisted is the cache state saved to disk.
type persisted struct {
	Bundle    *spiffebundle.Bundle
	Federated map[spiffeid.TrustDomain]*spiffebundle.Bundle
	Entries   []*types.Entry
	SVIDs     map[string]*cache.X509SVID
}

func encodeSVID(s *cache.X509SVID) (diskSVID, error) {
	key, err := x509.MarshalPKCS8PrivateKey(s.Key)
	if err != nil {
		return diskSVID{}, fmt.Errorf("agent: marshal key: %w", err)
	}
	d := diskSVID{Key: key}
	if ak, ok := s.AltKey.(*mldsa.PrivateKey); ok {
		if d.AltKey, err = mldsa.MarshalPKCS8PrivateKey(ak); err != nil {
			return diskSVID{}, fmt.Errorf("agent: marshal ML-DSA key: %w", err)
		}
	}
	for _, c := range s.Chain {
		d.Chain = append(d.Chain, c.Raw)
	}
	return d, nil
}

func decodeSVID(d diskSVID) (*cache.X509SVID, error) {
	k, err := x509.ParsePKCS8PrivateKey(d.Key)
	if err != nil {
		return nil, fmt.Errorf("agent: parse key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("agent: key of type %T cannot sign", k)
	}
	s, err := parseChain(d.Chain, signer)
	if err != nil {
		return nil, err
	}
	if len(d.AltKey) > 0 {
		ak, err := mldsa.ParsePKCS8PrivateKey(d.AltKey)
		if err != nil {
			return nil, fmt.Errorf("agent: parse ML-DSA key: %w", err)
		}
		s.AltKey = ak
	}
	return s, nil
}

func (d *diskState) saveAgentSVID(s *cache.X509SVID) error {
	enc, err := encodeSVID(s)
	if err != nil {
		return err
	}
	data, err := json.Marshal(enc)
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(d.dir, agentSVIDFile), data)
}

func (d *diskState) loadAgentSVID() (*cache.X509SVID, error) {
	data, err := privdir.ReadFile(filepath.Join(d.dir, agentSVIDFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	var enc diskSVID
	if err := json.Unmarshal(data, &enc); err != nil {
		return nil, fmt.Errorf("agent: parse %s: %w", agentSVIDFile, err)
	}
	return decodeSVID(enc)
}

func (d *diskState) removeAgentSVID() {
	_ = os.Remove(filepath.Join(d.dir, agentSVIDFile))
}

func (d *diskState) saveCache(p persisted) error {
	dc := diskCache{Version: diskVersion, SVIDs: map[string]diskSVID{}, Federated: map[string]json.RawMessage{}}
	if p.Bundle != nil {
		b, err := bundlecodec.Marshal(p.Bundle, nil)
		if err != nil {
			return fmt.Errorf("agent: marshal bundle: %w", err)
		}
		dc.Bundle = b
	}
	for td, fb := range p.Federated {
		b, err := bundlecodec.Marshal(fb, nil)
		if err != nil {
			return fmt.Errorf("agent: marshal bundle: %w", err)
		}
		dc.Federated[td.Name()] = b
	}
	for _, e := range p.Entries {
		b, err := protojson.Marshal(e)
		if err != nil {
			return fmt.Errorf("agent: marshal entry: %w", err)
		}
		dc.Entries = append(dc.Entries, b)
	}
	for id, s := range p.SVIDs {
		enc, err := encodeSVID(s)
		if err != nil {
			return err
		}
		dc.SVIDs[id] = enc
	}
	data, err := json.Marshal(dc)
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(d.dir, cacheFile), data)
}

func (d *diskState) loadCache(td spiffeid.TrustDomain) (*persisted, error) {
	data, err := privdir.ReadFile(filepath.Join(d.dir, cacheFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	var dc diskCache
	if err := json.Unmarshal(data, &dc); err != nil {
		return nil, fmt.Errorf("agent: parse %s: %w", cacheFile, err)
	}
	if dc.Version != diskVersion {
		return nil, fmt.Errorf("agent: %s has version %d, want %d", cacheFile, dc.Version, diskVersion)
	}
	p := &persisted{SVIDs: map[string]*cache.X509SVID{}, Federated: map[spiffeid.TrustDomain]*spiffebundle.Bundle{}}
	if len(dc.Bundle) > 0 {
		b, err := bundlecodec.Parse(td, dc.Bundle)
		if err != nil {
			return nil, fmt.Errorf("agent: cached bundle: %w", err)
		}
		p.Bundle = b.Bundle
	}
	for name, raw := range dc.Federated {
		ftd, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			continue
		}
		if b, err := bundlecodec.Parse(ftd, raw); err == nil {
			p.Federated[ftd] = b.Bundle
		}
	}
	for _, raw := range dc.Entries {
		e := &types.Entry{}
		if err := protojson.Unmarshal(raw, e); err != nil {
			return nil, fmt.Errorf("agent: cached entry: %w", err)
		}
		p.Entries = append(p.Entries, e)
	}
	for id, enc := range dc.SVIDs {
		s, err := decodeSVID(enc)
		if err != nil {
			return nil, err
		}
		p.SVIDs[id] = s
	}
	return p, nil
}

// writeFile replaces path atomically with a 0600 file, through
// privdir.WriteFile (checked directory, O_NOFOLLOW temporary file, rename).
func writeFile(path string, data []byte) error {
	if err := privdir.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}
