package peercred

import (
	"testing"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

func TestSelectorsBoundToConnectCredentials(t *testing.T) {
	ai := AuthInfo{UID: 65534, GID: 65534}
	sel := func(t, v string) *types.Selector { return &types.Selector{Type: t, Value: v} }
	tests := []struct {
		name string
		sels []*types.Selector
		ok   bool
	}{
		{"matching uid and gid", []*types.Selector{sel("unix", "uid:65534"), sel("unix", "gid:65534"), sel("unix", "supplementary_gid:0")}, true},
		{"uid of another user", []*types.Selector{sel("unix", "uid:0"), sel("unix", "gid:65534")}, false},
		{"gid of another group", []*types.Selector{sel("unix", "uid:65534"), sel("unix", "gid:0")}, false},
		{"other selector types are not unix IDs", []*types.Selector{sel("k8s", "uid:0")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := bound(ai, tt.sels); (err == nil) != tt.ok {
				t.Fatalf("bound: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
