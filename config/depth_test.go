package config_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/signet-id/signet/config"
)

// TestNestingLimit feeds the review's deep.hcl (finding 15: half a MiB of
// nested brackets under the 1 MiB cap, which overflowed the stack and
// killed `server run --config`) and its variants to LoadServer and
// LoadAgent: each must fail with an error naming the limit and the line.
func TestNestingLimit(t *testing.T) {
	n := (1<<20)/2 - 200
	deep := []struct{ name, src, line string }{
		{"deep.hcl brackets", "server {\n  admin_ids = " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n}\n", ":2:"},
		{"deep2.hcl parentheses", "server {\n  trust_domain = " + strings.Repeat("(", n) + "1" + strings.Repeat(")", n) + "\n}\n", ":2:"},
		{"nested objects", "server {\n  x = " + strings.Repeat("{a = ", n/5) + "1" + strings.Repeat("}", n/5) + "\n}\n", ":2:"},
		{"nested blocks", strings.Repeat("b {\n", 100) + strings.Repeat("}\n", 100), ":65:"},
		{"nested templates", "server {\n  trust_domain = " + strings.Repeat(`"${`, n/3) + "1" + strings.Repeat(`}"`, n/3) + "\n}\n", ":2:"},
		{"unary not", "server {\n  x = " + strings.Repeat("!", n) + "true\n}\n", ":2:"},
		{"unary minus", "server {\n  x = " + strings.Repeat("- ", n/2) + "1\n}\n", ":2:"},
		{"closers hidden in strings", "server {\n  admin_ids = " + strings.Repeat(`["]", `, 200) + strings.Repeat("]", 200) + "\n}\n", ":2:"},
	}
	for _, tt := range deep {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.src) > config.MaxFileSize {
				t.Fatalf("test input %d bytes is over the size cap", len(tt.src))
			}
			p := write(t, tt.src)
			for _, load := range []func(string) error{
				func(p string) error { _, err := config.LoadServer(p); return err },
				func(p string) error { _, err := config.LoadAgent(p); return err },
			} {
				err := load(p)
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("deeper than %d levels", config.MaxNesting)) || !strings.Contains(err.Error(), tt.line) {
					t.Fatalf("got %v, want the nesting limit at line %s", err, tt.line)
				}
			}
		})
	}

	// Nesting up to the limit, and brackets that are not nesting, still parse.
	lit := strings.Repeat("[", 100)
	ok := []struct{ name, src, want string }{
		// Parsed, then refused by the decoder: admin_ids is a list of strings.
		{"60 brackets", "server {\n  admin_ids = " + strings.Repeat("[", 60) + strings.Repeat("]", 60) + "\n}\n", "Unsuitable value"},
		{"brackets in a string", "server {\n  trust_domain = \"" + lit + "\\\"" + lit + "\"\n}\n", ""},
		{"brackets in comments", "# " + lit + "\n// " + lit + "\n/* " + lit + "\n*/\nserver {\n  trust_domain = \"x\"\n}\n", ""},
		{"brackets in a heredoc", "server {\n  trust_domain = <<-EOT\n    " + lit + "\n    EOT\n}\n", ""},
		{"escaped interpolation", "server {\n  trust_domain = \"$${" + lit + "\"\n}\n", ""},
		{"an interpolation", "server {\n  trust_domain = \"${\"a\"}-${\"b\"}\"\n  bind_port = -1 - -2 + 8081\n}\n", ""},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.LoadServer(write(t, tt.src))
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSizeLimit(t *testing.T) {
	src := "server {\n}\n" + strings.Repeat("#", config.MaxFileSize)
	_, err := config.LoadServer(write(t, src))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(config.MaxFileSize)) {
		t.Fatalf("got %v, want the size limit", err)
	}
}
