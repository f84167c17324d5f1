package docker

import (
	"os"
	"strings"
	"testing"
)

// FuzzInspect feeds arbitrary Engine API answers to the decoder and the
// selector builder: no panic, and every selector is label, env or
// image_id.
func FuzzInspect(f *testing.F) {
	b, err := os.ReadFile("testdata/inspect_podman.json")
	if err != nil {
		f.Fatal(err)
	}
	const id = "42639014e568e4c7be6944b41771fa3bf80a4636f4369143a96ebb6d2171b2c4"
	f.Add(b)
	f.Add([]byte(`{"Id":"` + id + `","Config":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseInspect(b, id)
		if err != nil {
			return
		}
		for _, v := range c.selectors() {
			if !strings.HasPrefix(v, "label:") && !strings.HasPrefix(v, "env:") && !strings.HasPrefix(v, "image_id:") {
				t.Fatalf("selector %q", v)
			}
		}
	})
}

func TestInspectFixture(t *testing.T) {
	b, err := os.ReadFile("testdata/inspect_podman.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseInspect(b, strings.Repeat("0", 64)); err == nil {
		t.Fatal("an answer about another container was accepted")
	}
	c, err := parseInspect(b, "42639014e568e4c7be6944b41771fa3bf80a4636f4369143a96ebb6d2171b2c4")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(c.selectors(), " ")
	want := "label:app:web env:PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin env:TERM=xterm env:container=podman env:FOO=bar env:HOSTNAME=42639014e568 image_id:localhost/k8swl-sleeper:1"
	if got != want {
		t.Fatalf("selectors %q\nwant %q", got, want)
	}
}
