package cache

import (
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// TestRecordSet: a selector's records through one, many, back to one and
// none, with a replacement under the same entry ID in each form.
func TestRecordSet(t *testing.T) {
	rec := func(id string) *record { return &record{entry: &types.Entry{Id: id}} }
	ids := func(s *recordSet) []string {
		var out []string
		s.each(func(r *record) { out = append(out, r.entry.Id) })
		slices.Sort(out)
		return out
	}
	a, a2, b, c := rec("a"), rec("a"), rec("b"), rec("c")
	s := &recordSet{}
	steps := []struct {
		name  string
		do    func() bool // reports emptiness for removals
		want  []string
		empty bool
	}{
		{"add a", func() bool { s.add(a); return false }, []string{"a"}, false},
		{"replace a", func() bool { s.add(a2); return false }, []string{"a"}, false},
		{"add b", func() bool { s.add(b); return false }, []string{"a", "b"}, false},
		{"add c", func() bool { s.add(c); return false }, []string{"a", "b", "c"}, false},
		{"remove absent", func() bool { return s.remove("x") }, []string{"a", "b", "c"}, false},
		{"remove b", func() bool { return s.remove("b") }, []string{"a", "c"}, false},
		{"remove a", func() bool { return s.remove("a") }, []string{"c"}, false},
		{"remove absent from one", func() bool { return s.remove("a") }, []string{"c"}, false},
		{"remove c", func() bool { return s.remove("c") }, nil, true},
	}
	for _, st := range steps {
		empty := st.do()
		if got := ids(s); !slices.Equal(got, st.want) {
			t.Fatalf("%s: records %v, want %v", st.name, got, st.want)
		}
		if strings.HasPrefix(st.name, "remove") && empty != st.empty {
			t.Fatalf("%s: empty %v, want %v", st.name, empty, st.empty)
		}
	}
	var n int
	(*recordSet)(nil).each(func(*record) { n++ })
	if n != 0 {
		t.Fatal("nil set has records")
	}
	if s.add(a2); s.one != a2 {
		t.Fatal("replacement under the same ID is not the one held")
	}
}
