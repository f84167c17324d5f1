package metadata_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/signet-id/signet/attest/metadata"
)

// TestDo: headers are sent, a 200 body within the limit is returned, a
// longer one, another status and a redirect (not followed: a metadata
// answer must come from the service itself) are errors.
func TestDo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.Header.Get("Metadata-Flavor") != "Google" {
				http.Error(w, "no header", http.StatusForbidden)
				return
			}
			w.Header().Set("Expires", "soon")
			_, _ = w.Write([]byte("12345"))
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		default:
			http.Error(w, strings.Repeat("x", 1000), http.StatusNotFound)
		}
	}))
	defer srv.Close()
	var c *metadata.Client
	ctx := context.Background()
	h := map[string]string{"Metadata-Flavor": "Google"}
	var expires string
	b, err := c.DoHeader(ctx, http.MethodGet, srv.URL+"/ok", h, 5, func(hd http.Header) { expires = hd.Get("Expires") })
	if err != nil || string(b) != "12345" || expires != "soon" {
		t.Fatalf("ok: %q %q %v", b, expires, err)
	}
	if _, err := c.Do(ctx, http.MethodGet, srv.URL+"/ok", h, 4); err == nil || !strings.Contains(err.Error(), "longer than 4 bytes") {
		t.Fatalf("over the limit: %v", err)
	}
	var se *metadata.StatusError
	if _, err := c.Do(ctx, http.MethodGet, srv.URL+"/ok", nil, 5); !errors.As(err, &se) || se.Code != http.StatusForbidden {
		t.Fatalf("without the header: %v, want a 403 StatusError", err)
	}
	if _, err := c.Do(ctx, http.MethodGet, srv.URL+"/missing", nil, 5); !errors.As(err, &se) || se.Code != http.StatusNotFound || len(se.Body) > 256 {
		t.Fatalf("404: %v", err)
	}
	if _, err := c.Do(ctx, http.MethodGet, srv.URL+"/redirect", h, 5); !errors.As(err, &se) || se.Code != http.StatusFound {
		t.Fatalf("redirect: %v, want the 302 unfollowed", err)
	}
}
