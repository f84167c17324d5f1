package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// maxEntryData bounds an `entry create --data` file (64 MiB, about
// 200,000 entries).
const maxEntryData = 64 << 20

// entryDataBatch is how many entries one BatchCreateEntry carries, under
// the server's batch bound (entry.DefaultMaxBatch).
const entryDataBatch = 1000

// spireEntries is spire-server's `entry create -data` format: the JSON of
// SPIRE's common.RegistrationEntries, with SPIRE's key names.
type spireEntries struct {
	Entries []spireEntry `json:"entries"`
}

type spireEntry struct {
	Selectors []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"selectors"`
	ParentID       string   `json:"parent_id"`
	SpiffeID       string   `json:"spiffe_id"`
	X509SVIDTTL    int32    `json:"x509_svid_ttl"`
	JWTSVIDTTL     int32    `json:"jwt_svid_ttl"`
	FederatesWith  []string `json:"federates_with"`
	EntryID        string   `json:"entry_id"`
	Admin          bool     `json:"admin"`
	Downstream     bool     `json:"downstream"`
	EntryExpiry    int64    `json:"entryExpiry"`
	DNSNames       []string `json:"dns_names"`
	RevisionNumber int64    `json:"revision_number"`
	StoreSVID      bool     `json:"store_svid"`
	Hint           string   `json:"hint"`
	CreatedAt      int64    `json:"created_at"`
}

// readEntryData reads spire-server's entries JSON from path ("-" is
// stdin) and returns the entries to create, each checked as the flags
// are; an error names the entry by its position.
func readEntryData(path string, stdin io.Reader) ([]*types.Entry, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, usageErrorf("--data: %v", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxEntryData+1))
	if err != nil {
		return nil, fmt.Errorf("--data: %w", err)
	}
	if len(data) > maxEntryData {
		return nil, usageErrorf("--data %s is larger than %d MiB: split it", path, maxEntryData>>20)
	}
	var in spireEntries
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, usageErrorf("--data %s: %v (want spire-server's format: {\"entries\": [{\"spiffe_id\": ..., \"parent_id\": ..., \"selectors\": [{\"type\": \"unix\", \"value\": \"uid:1000\"}]}]})", path, err)
	}
	if len(in.Entries) == 0 {
		return nil, usageErrorf("--data %s holds no entries", path)
	}
	out := make([]*types.Entry, 0, len(in.Entries))
	for i, se := range in.Entries {
		e, err := se.entry()
		if err != nil {
			return nil, usageErrorf("--data %s: entry %d (spiffe_id %q): %v", path, i+1, se.SpiffeID, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func (se spireEntry) entry() (*types.Entry, error) {
	if se.StoreSVID {
		return nil, fmt.Errorf("store_svid is not supported: Signet has no SVID stores (workloads fetch SVIDs over the Workload API)")
	}
	id, err := spiffeid.FromString(se.SpiffeID)
	if err != nil {
		return nil, fmt.Errorf("invalid spiffe_id: %w", err)
	}
	parent, err := spiffeid.FromString(se.ParentID)
	if err != nil {
		return nil, fmt.Errorf("invalid parent_id: %w", err)
	}
	if len(se.Selectors) == 0 {
		return nil, fmt.Errorf("no selectors")
	}
	e := &types.Entry{
		Id:          se.EntryID,
		SpiffeId:    &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()},
		ParentId:    &types.SPIFFEID{TrustDomain: parent.TrustDomain().Name(), Path: parent.Path()},
		X509SvidTtl: se.X509SVIDTTL,
		JwtSvidTtl:  se.JWTSVIDTTL,
		Admin:       se.Admin,
		Downstream:  se.Downstream,
		ExpiresAt:   se.EntryExpiry,
		DnsNames:    se.DNSNames,
		Hint:        se.Hint,
	}
	for _, s := range se.Selectors {
		if s.Type == "" || s.Value == "" {
			return nil, fmt.Errorf("selector %q:%q: type and value are required", s.Type, s.Value)
		}
		e.Selectors = append(e.Selectors, &types.Selector{Type: s.Type, Value: s.Value})
	}
	for _, f := range se.FederatesWith {
		td, err := spiffeid.TrustDomainFromString(f)
		if err != nil {
			return nil, fmt.Errorf("invalid federates_with %q: %w", f, err)
		}
		e.FederatesWith = append(e.FederatesWith, td.Name())
	}
	if se.X509SVIDTTL < 0 || se.JWTSVIDTTL < 0 || se.EntryExpiry < 0 {
		return nil, fmt.Errorf("x509_svid_ttl, jwt_svid_ttl and entryExpiry must not be negative")
	}
	return e, nil
}

// entryDataRequests splits entries into requests of entryDataBatch.
func entryDataRequests(entries []*types.Entry) []*entryv1.BatchCreateEntryRequest {
	var reqs []*entryv1.BatchCreateEntryRequest
	for len(entries) > 0 {
		n := min(len(entries), entryDataBatch)
		reqs = append(reqs, &entryv1.BatchCreateEntryRequest{Entries: entries[:n]})
		entries = entries[n:]
	}
	return reqs
}
