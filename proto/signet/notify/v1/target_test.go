package notifyv1

import (
	"testing"

	"google.golang.org/protobuf/proto"
)

// TestEntryTargets: the Go constant is the string notify.proto declares,
// and every EntryTarget but the zero value declares a distinct one.
func TestEntryTargets(t *testing.T) {
	values := EntryTarget_ENTRY_TARGET_UNSPECIFIED.Descriptor().Values()
	seen := map[string]bool{}
	for i := range values.Len() {
		v := values.Get(i)
		id, _ := proto.GetExtension(v.Options(), E_EntryId).(string)
		if v.Number() == 0 {
			if id != "" {
				t.Errorf("%s has entry_id %q", v.Name(), id)
			}
			continue
		}
		if id == "" || seen[id] {
			t.Errorf("%s: entry_id %q empty or repeated", v.Name(), id)
		}
		seen[id] = true
	}
	v := values.ByNumber(EntryTarget_ENTRY_TARGET_AGENT.Number())
	if got := proto.GetExtension(v.Options(), E_EntryId); got != AgentEntryID {
		t.Fatalf("ENTRY_TARGET_AGENT entry_id = %q, AgentEntryID = %q", got, AgentEntryID)
	}
}
