// Package spire proves Signet's wire compatibility with real SPIRE v1.13.3
// binaries, in both directions: a spire-agent attesting to a Signet server,
// the Signet agent attesting to a spire-server, and the spire-server CLI
// administering a Signet server with the same results as against SPIRE.
//
// The tests find the binaries through SIGNET_SPIRE_DIR (set by
// scripts/test.sh), or build them with scripts/install-spire.sh. The package
// holds no code besides its tests; docs/spire-compat.md lists what each test
// proves.
package spire
