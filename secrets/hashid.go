package secrets

import (
	"crypto/sha256"
	"encoding/hex"
)

// HashID returns the first 16 bytes of the SHA-256 of a lease ID or token
// accessor, in hex: the only form in which they are logged, stored or sent
// to the event log. Empty stays empty.
func HashID(id string) string {
	if id == "" {
		return ""
	}
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:16])
}
