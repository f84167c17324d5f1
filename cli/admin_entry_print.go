package cli

import (
	"fmt"
	"io"
	"time"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// entryResult is the common shape of create and update results.
type entryResult interface {
	GetStatus() *types.Status
	GetEntry() *types.Entry
}

// fillFailedEntries puts the requested entry into each failed result, as
// spire-server does, so that the output shows what was refused. For an
// AlreadyExists failure the server returns the entry that already exists;
// its ID is returned by result index so it can be shown too.
func fillFailedEntries[R entryResult](req []*types.Entry, results []R) map[int]string {
	existing := map[int]string{}
	for i, r := range results {
		if r.GetStatus().GetCode() == int32(codes.OK) || i >= len(req) {
			continue
		}
		if codes.Code(r.GetStatus().GetCode()) == codes.AlreadyExists && r.GetEntry().GetId() != "" {
			existing[i] = r.GetEntry().GetId()
		}
		setResultEntry(r, req[i])
	}
	return existing
}

func setResultEntry(r any, e *types.Entry) {
	switch r := r.(type) {
	case *entryv1.BatchCreateEntryResponse_Result:
		r.Entry = e
	case *entryv1.BatchUpdateEntryResponse_Result:
		r.Entry = e
	}
}

// printEntryResults prints per-item results of a batch create or update
// and returns an error if any item failed.
func printEntryResults[R entryResult](out, errOut io.Writer, format outputFormat, verb string, resp proto.Message, results []R, existing map[int]string) error {
	failed := 0
	for _, r := range results {
		if r.GetStatus().GetCode() != int32(codes.OK) {
			failed++
		}
	}
	if format.json() {
		if err := writeProtoJSON(out, resp); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			if r.GetStatus().GetCode() == int32(codes.OK) {
				printEntry(out, r.GetEntry())
			}
		}
		for i, r := range results {
			if st := r.GetStatus(); st.GetCode() != int32(codes.OK) {
				fmt.Fprintf(errOut, "Failed to %s the following entry (%s):\n", verb, statusText(codes.Code(st.GetCode()), st.GetMessage()))
				if id, ok := existing[i]; ok {
					fmt.Fprintf(errOut, "Existing entry   : %s (see `signet entry show --entry-id %s`)\n", id, id)
				}
				printEntry(errOut, r.GetEntry())
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("failed to %s %d of %s (%w)", verb, failed, pluralize(len(results), "entry", "entries"), errBatchFailed)
	}
	return nil
}

// printEntry prints an entry in spire-server's layout.
func printEntry(w io.Writer, e *types.Entry) {
	id := e.GetId()
	if id == "" {
		id = "(none)"
	}
	fmt.Fprintf(w, "Entry ID         : %s\n", id)
	fmt.Fprintf(w, "SPIFFE ID        : %s\n", idString(e.GetSpiffeId()))
	fmt.Fprintf(w, "Parent ID        : %s\n", idString(e.GetParentId()))
	fmt.Fprintf(w, "Revision         : %d\n", e.GetRevisionNumber())
	if e.GetDownstream() {
		fmt.Fprintf(w, "Downstream       : true\n")
	}
	fmt.Fprintf(w, "X509-SVID TTL    : %s\n", ttlText(e.GetX509SvidTtl()))
	fmt.Fprintf(w, "JWT-SVID TTL     : %s\n", ttlText(e.GetJwtSvidTtl()))
	if e.GetExpiresAt() != 0 {
		fmt.Fprintf(w, "Expiration time  : %s\n", time.Unix(e.GetExpiresAt(), 0).UTC())
	}
	for _, s := range e.GetSelectors() {
		fmt.Fprintf(w, "Selector         : %s:%s\n", s.GetType(), s.GetValue())
	}
	for _, td := range e.GetFederatesWith() {
		fmt.Fprintf(w, "FederatesWith    : %s\n", td)
	}
	for _, n := range e.GetDnsNames() {
		fmt.Fprintf(w, "DNS name         : %s\n", n)
	}
	if e.GetAdmin() {
		fmt.Fprintf(w, "Admin            : true\n")
	}
	if e.GetStoreSvid() {
		fmt.Fprintf(w, "StoreSvid        : true\n")
	}
	if e.GetHint() != "" {
		fmt.Fprintf(w, "Hint             : %s\n", e.GetHint())
	}
	fmt.Fprintln(w)
}

func ttlText(secs int32) string {
	if secs == 0 {
		return "default"
	}
	return fmt.Sprint(secs)
}

// idString renders an API SPIFFE ID.
func idString(id *types.SPIFFEID) string {
	if id == nil {
		return ""
	}
	return "spiffe://" + id.GetTrustDomain() + id.GetPath()
}

func printDeleteResults(out, errOut io.Writer, format outputFormat, resp *entryv1.BatchDeleteEntryResponse) error {
	failed := 0
	for _, r := range resp.GetResults() {
		if r.GetStatus().GetCode() != int32(codes.OK) {
			failed++
		}
	}
	if format.json() {
		if err := writeProtoJSON(out, resp); err != nil {
			return err
		}
	} else {
		for _, r := range resp.GetResults() {
			if st := r.GetStatus(); st.GetCode() == int32(codes.OK) {
				fmt.Fprintf(out, "Deleted entry with ID: %s\n", r.GetId())
			} else {
				fmt.Fprintf(errOut, "Failed to delete entry with ID %s (%s)\n", r.GetId(), statusText(codes.Code(st.GetCode()), st.GetMessage()))
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("failed to delete %d of %s (%w)", failed, pluralize(len(resp.GetResults()), "entry", "entries"), errBatchFailed)
	}
	return nil
}
