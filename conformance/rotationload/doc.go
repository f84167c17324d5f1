// Package rotationload measures forced rotation at scale. Simulated agents
// speak the real agent API over TLS 1.3 (X25519MLKEM768) to a real
// in-process Signet server: they attest with a join token, open the
// signet.notify.v1 push stream, fetch their authorized entries and hold an
// X.509-SVID for each. An admin then prepares and activates a new X.509
// authority and taints the old one over the LocalAuthority API; the time
// until the server counts no SVID signed by the old authority, and until
// every simulated agent holds only SVIDs of the new one, is reported next
// to the raw ECDSA P-256 signing ceiling of the same machine.
//
// The default test is small; `go test ./conformance/rotationload -run
// TestForcedRotationLoad -args -full` runs the full measurement (see
// docs/rotation-load.md).
package rotationload
