package k8spsat

import (
	"encoding/json"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FuzzParsePayload: any payload is refused with an InvalidArgument status
// or yields a cluster and a token, both non-empty, that re-encode to the
// same fields; nothing panics.
func FuzzParsePayload(f *testing.F) {
	f.Add([]byte(`{"cluster":"prod","token":"eyJhbGciOiJSUzI1NiJ9.e30.sig"}`))
	f.Add([]byte(`{"cluster":"","token":"t"}`))
	f.Add([]byte(`{"cluster":"c","token":null}`))
	f.Add([]byte(`{"cluster":"c","token":"t","extra":[1,2]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		d, err := parsePayload(payload)
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("refused with %v", err)
			}
			if d != (attestationData{}) {
				t.Fatalf("refused payload yielded %+v", d)
			}
			return
		}
		if d.Cluster == "" || d.Token == "" {
			t.Fatalf("accepted %q with an empty field: %+v", payload, d)
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parsePayload(b)
		if err != nil || again != d {
			t.Fatalf("re-encoded payload %s: %+v, %v", b, again, err)
		}
	})
}
