package agent

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/pqtest"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/encoding/protojson"
)

// FuzzLoadCache fuzzes the agent's on-disk cache and agent-SVID files
// (bundle JSON, federated bundles, entries, SVIDs and keys), as read at
// start-up: no input may panic, and an accepted cache must save again.
func FuzzLoadCache(f *testing.F) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	// Classic certificates keep the seeds small (hybrid ones are kilobytes
	// and slow every mutation); the ML-DSA key is a short PKCS#8 seed.
	h, err := pqtest.Classic(time.Now())
	if err != nil {
		f.Fatal(err)
	}
	alt := pqtest.NewMLDSAKey(mldsa.MLDSA44)
	b := spiffebundle.New(td)
	b.AddX509Authority(h.Root.Cert)
	fed := spiffebundle.New(spiffeid.RequireTrustDomainFromString("other.org"))
	fed.AddX509Authority(h.Root.Cert)
	svid := &cache.X509SVID{Chain: []*x509.Certificate{h.Leaf.Cert}, Key: h.Leaf.Key, AltKey: alt}
	seedDir := f.TempDir()
	d := &diskState{dir: seedDir}
	if err := d.saveCache(persisted{
		Bundle: b, Federated: map[spiffeid.TrustDomain]*spiffebundle.Bundle{fed.TrustDomain(): fed},
		Entries: []*types.Entry{{Id: "e", SpiffeId: &types.SPIFFEID{TrustDomain: "example.org", Path: "/w"}}},
		SVIDs:   map[string]*cache.X509SVID{"e": svid},
	}); err != nil {
		f.Fatal(err)
	}
	if err := d.saveAgentSVID(svid); err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{cacheFile, agentSVIDFile} {
		data, err := os.ReadFile(filepath.Join(seedDir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"version":1,"bundle":{"keys":[]},"federated":{"x":{}},"entries":[{}],"svids":{"a":{}}}`))
	// One directory for every input: calls run one at a time per worker
	// process, and a fresh t.TempDir per input costs more than the parse.
	dir := f.TempDir()
	d = &diskState{dir: dir}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, name := range []string{cacheFile, agentSVIDFile} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		_, _ = d.loadAgentSVID()
		p, err := d.loadCache(td)
		if err != nil || p == nil {
			return
		}
		// What was accepted must encode again (as saveCache would).
		for _, e := range p.Entries {
			if _, err := protojson.Marshal(e); err != nil {
				t.Fatalf("accepted entry does not encode: %v", err)
			}
		}
		for id, s := range p.SVIDs {
			if _, err := encodeSVID(s); err != nil {
				t.Fatalf("accepted SVID %q does not encode: %v", id, err)
			}
		}
	})
}
