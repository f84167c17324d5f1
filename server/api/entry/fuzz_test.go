package entry

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/proto"
)

// FuzzValidateEntry fuzzes the Entry API's validation of SPIFFE IDs,
// selectors, DNS names, federated trust domains, hints and entry IDs, as
// CreateEntry/BatchCreateEntry apply it. An accepted entry must name a
// workload in the server's trust domain outside /spire, and a member
// parent.
func FuzzValidateEntry(f *testing.F) {
	f.Add("example.org", "/w", "example.org", "/spire/agent/x", "unix", "uid:0", "a.example.org", "other.org", "", "e-1")
	f.Add("example.org", "/spire/server", "example.org", "/p", "k8s", "ns:default", "*.x", "", "h", "")
	f.Add("EXAMPLE.org", "//a/./b", "x", "", "", ":", "-a.b", "a b", strings.Repeat("h", 8), "a/b")
	f.Add("example.org", "/a%20b", "example.org", "/p", "unix", "", "xn--n3h.com", "Example.org", "", "..")
	td := spiffeid.RequireTrustDomainFromString("example.org")
	s := &Service{td: td}
	f.Fuzz(func(t *testing.T, idTD, idPath, parentTD, parentPath, selType, selValue, dns, fed, hint, entryID string) {
		e := &types.Entry{
			Id:            entryID,
			SpiffeId:      &types.SPIFFEID{TrustDomain: idTD, Path: idPath},
			ParentId:      &types.SPIFFEID{TrustDomain: parentTD, Path: parentPath},
			Selectors:     []*types.Selector{{Type: selType, Value: selValue}},
			DnsNames:      []string{dns},
			FederatesWith: []string{fed},
			Hint:          hint,
		}
		if err := s.validateEntry(e, nil, true); err != nil {
			return
		}
		id, err := spiffeid.FromPath(td, idPath)
		if err != nil || idTD != td.Name() || id.Path() == "" || id.Path() == "/spire" || strings.HasPrefix(id.Path(), "/spire/") {
			t.Fatalf("accepted spiffe_id %q %q", idTD, idPath)
		}
		if p, err := spiffeid.FromPath(td, parentPath); err != nil || parentTD != td.Name() || p.Path() == "" {
			t.Fatalf("accepted parent_id %q %q", parentTD, parentPath)
		}
		if selType == "" || selValue == "" {
			t.Fatalf("accepted selector %q:%q", selType, selValue)
		}
		if _, err := spiffeid.TrustDomainFromString(fed); err != nil {
			t.Fatalf("accepted federates_with %q", fed)
		}
	})
}

// FuzzValidateEntryProto feeds arbitrary wire bytes, decoded as an Entry
// the way gRPC decodes a request, to the same validation (with and without
// a mask).
func FuzzValidateEntryProto(f *testing.F) {
	seed := &types.Entry{
		SpiffeId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/w"},
		ParentId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/p"},
		Selectors: []*types.Selector{{Type: "unix", Value: "uid:0"}, {Type: "unix", Value: "gid:0"}},
		DnsNames:  []string{"a.example.org"}, StoreSvid: true, X509SvidTtl: 60,
	}
	b, _ := proto.Marshal(seed)
	f.Add(b, false)
	f.Add([]byte{}, true)
	s := &Service{td: spiffeid.RequireTrustDomainFromString("example.org")}
	f.Fuzz(func(t *testing.T, data []byte, masked bool) {
		e := &types.Entry{}
		if proto.Unmarshal(data, e) != nil {
			return
		}
		var mask *types.EntryMask
		if masked {
			mask = &types.EntryMask{SpiffeId: true, Selectors: true, DnsNames: true}
		}
		_ = s.validateEntry(e, mask, !masked)
		applyMask(e, mask)
	})
}
