package notify

import (
	"fmt"
	"slices"
	"testing"

	notifyv1 "github.com/signet-id/signet/proto/signet/notify/v1"
)

// Pending RENEW_NOW entry lists are de-duplicated and collapse to "renew
// all" (nil) beyond MaxPendingEntryIDs, however many are queued while an
// agent does not read.
func TestMergeEntryIDsIsBounded(t *testing.T) {
	many := make([]string, MaxPendingEntryIDs+1)
	for i := range many {
		many[i] = fmt.Sprint("e", i)
	}
	cases := []struct {
		name    string
		publish [][]string
		want    []string // nil: renew all
	}{
		{"one list", [][]string{{"a", "b"}}, []string{"a", "b"}},
		{"duplicates merge", [][]string{{"a", "b", "a"}, {"b", "a"}, {"c"}}, []string{"a", "b", "c"}},
		{"at the cap", [][]string{many[:MaxPendingEntryIDs], many[:10]}, many[:MaxPendingEntryIDs]},
		{"beyond the cap renew all", [][]string{many[:MaxPendingEntryIDs], many[MaxPendingEntryIDs:]}, nil},
		{"one huge list renews all", [][]string{many}, nil},
		{"renew all absorbs later lists", [][]string{{"a"}, nil, {"b"}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var pending *notifyv1.Notification
			for _, ids := range tc.publish {
				merged := mergeEntryIDs(pending, pending != nil, ids)
				pending = &notifyv1.Notification{Kind: notifyv1.Notification_KIND_RENEW_NOW, EntryIds: merged}
			}
			if !slices.Equal(pending.EntryIds, tc.want) || (tc.want == nil) != (pending.EntryIds == nil) {
				t.Fatalf("pending entry IDs: %d %v, want %d", len(pending.EntryIds), head(pending.EntryIds), len(tc.want))
			}
		})
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }
