// Package spire pins the SPIRE v1.13.3 binaries used by Signet's
// interoperability tests as Go tool dependencies. It holds no code;
// scripts/install-spire.sh builds the tools into a per-version cache.
package spire
