package eventlog

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestKindsMatchDocs: Kinds() is exactly the kind table of
// docs/audit-log.md, in its order, so a kind added, removed or renamed in
// one place and not the other fails here.
func TestKindsMatchDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/audit-log.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "### Kinds\n")
	if !ok {
		t.Fatal(`docs/audit-log.md has no "### Kinds" section`)
	}
	code := regexp.MustCompile("`([^`]+)`")
	var documented []Kind
	inTable := false
	for line := range strings.SplitSeq(table, "\n") {
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break // the table ends at its first non-row line
			}
			continue
		}
		inTable = true
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.Split(line, "|")[1]
		for _, m := range code.FindAllStringSubmatch(first, -1) {
			documented = append(documented, Kind(m[1]))
		}
	}
	if !slices.Equal(documented, Kinds()) {
		t.Fatalf("docs/audit-log.md lists kinds\n%v\nKinds() returns\n%v", documented, Kinds())
	}
	for _, k := range Kinds() {
		if !k.Valid() || !wellFormedKind(string(k)) {
			t.Errorf("kind %q: not valid or not well formed", k)
		}
	}
	if Kind("svid.renewed").Valid() || Kind("vault.lease.other").Valid() {
		t.Error("an undeclared kind is valid")
	}
}
