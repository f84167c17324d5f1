package secrets

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Content types of Value.Data.
const (
	ContentJSON = "application/json"
	ContentText = "text/plain"
)

// Value is one delivered state of a secret. Only Data is secret: String,
// LogValue and Format print the metadata alone.
type Value struct {
	// Name is the policy ID the workload asked for.
	Name     string
	SPIFFEID spiffeid.ID
	// Data is the secret: the JSON object of the secret's fields, or the
	// single Field (a string as is, anything else as JSON).
	Data        []byte
	ContentType string
	// Version is the KV v2 version; for leased secrets it counts the
	// leases obtained (1, 2, ... on every replacement).
	Version int64
	// LeaseIDHash identifies the lease (see HashID); empty without one.
	LeaseIDHash string
	LeaseTTL    time.Duration
	Renewable   bool
	// ExpiresAt is when the lease ends (zero without one).
	ExpiresAt time.Time
	// UpdatedAt is when this state was obtained from Vault.
	UpdatedAt time.Time
}

// String prints the value's metadata, never its data.
func (v Value) String() string {
	return fmt.Sprintf("secret %q for %s version %d (%d bytes redacted, lease %s, ttl %s)",
		v.Name, v.SPIFFEID, v.Version, len(v.Data), v.LeaseIDHash, v.LeaseTTL)
}

// Format implements fmt.Formatter so that every verb (%v, %+v, %#v, %x)
// prints String.
func (v Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(v.String())) }

// LogValue implements slog.LogValuer with metadata only.
func (v Value) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", v.Name),
		slog.String("spiffe_id", v.SPIFFEID.String()),
		slog.Int64("version", v.Version),
		slog.String("lease_id_hash", v.LeaseIDHash),
		slog.Duration("ttl", v.LeaseTTL),
	)
}

// encodeData renders a secret's fields (or one field) as delivered bytes.
func encodeData(data map[string]any, field string) ([]byte, string, error) {
	if field == "" {
		b, err := json.Marshal(data)
		if err != nil {
			return nil, "", fmt.Errorf("secrets: encode secret data: %s", "not representable as JSON")
		}
		return b, ContentJSON, nil
	}
	v, ok := data[field]
	if !ok {
		return nil, "", fmt.Errorf("secrets: field %q is not in the secret", field)
	}
	if s, ok := v.(string); ok {
		return []byte(s), ContentText, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, "", fmt.Errorf("secrets: encode field %q: %s", field, "not representable as JSON")
	}
	return b, ContentJSON, nil
}
