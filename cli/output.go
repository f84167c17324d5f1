package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// outputFormat is the value of --output: how a command prints its result.
type outputFormat string

const (
	outputText outputFormat = "text"
	outputJSON outputFormat = "json"
)

var _ pflag.Value = (*outputFormat)(nil)

func (o *outputFormat) String() string {
	if *o == "" {
		return string(outputText)
	}
	return string(*o)
}

func (o *outputFormat) Set(s string) error {
	switch strings.ToLower(s) {
	case "text", "pretty":
		*o = outputText
	case "json":
		*o = outputJSON
	case "utput":
		return errors.New(`"-output" reads as -o "utput": write --output json (two dashes) or -o json`)
	default:
		return fmt.Errorf("unknown output format %q: use text or json", s)
	}
	return nil
}

func (o *outputFormat) Type() string { return "text|json" }

func (o *outputFormat) json() bool { return *o == outputJSON }

// addOutputFlag registers --output (-o) on fs.
func addOutputFlag(fs *pflag.FlagSet, o *outputFormat) {
	*o = outputText
	fs.VarP(o, "output", "o", "output format: text or json (json is the API message, as spire-server -output json prints it)")
}

// writeProtoJSON prints m as one line of JSON the way `spire-server -output
// json` does: proto field names, unpopulated fields included, nulls dropped,
// keys sorted (so the output is stable across runs).
func writeProtoJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("cli: encoding %T as JSON: %w", m, err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("cli: re-encoding %T as JSON: %w", m, err)
	}
	return writeJSON(w, dropNulls(v))
}

// writeJSON prints v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func dropNulls(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if e == nil {
				delete(t, k)
				continue
			}
			t[k] = dropNulls(e)
		}
		return t
	case []any:
		out := make([]any, 0, len(t))
		for _, e := range t {
			if e != nil {
				out = append(out, dropNulls(e))
			}
		}
		return out
	default:
		return v
	}
}

// pluralize returns "1 entry" or "2 entries".
func pluralize(n int, singular, plural string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, singular)
	}
	return fmt.Sprintf("%d %s", n, plural)
}

// statusText renders a gRPC status code and message as "<code>: <message>".
func statusText(code codes.Code, msg string) string {
	if msg == "" {
		return code.String()
	}
	return code.String() + ": " + msg
}

// rpcError is an error answered by a server or agent, rendered as
// "<what>: <code>: <message>" plus a hint on what to do.
type rpcError struct {
	what string
	code codes.Code
	msg  string
	hint string
}

func (e *rpcError) Error() string {
	s := e.what + ": " + statusText(e.code, e.msg)
	if e.hint != "" {
		s += " (" + e.hint + ")"
	}
	return s
}

// GRPCStatus lets callers recover the status code.
func (e *rpcError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }

// hintForCode says what a user can do about an admin RPC failing with code.
func hintForCode(code codes.Code) string {
	switch code {
	case codes.PermissionDenied, codes.Unauthenticated:
		return "the admin socket serves only local admins: run as the user that owns the server's data directory"
	case codes.Unimplemented:
		return "this server does not implement that API; is it a Signet or SPIRE server of a matching version?"
	case codes.DeadlineExceeded:
		return "the server did not answer in time; check that it is running and not overloaded"
	case codes.InvalidArgument:
		return "fix the value named above and retry"
	}
	return ""
}

// errBatchFailed is returned when some items of a batch call failed; each
// failure has already been printed.
var errBatchFailed = errors.New("each failure is shown above")
