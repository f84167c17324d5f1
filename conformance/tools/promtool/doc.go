// Package promtool pins promtool from Prometheus v0.316.0 (the Go module
// of Prometheus 3.16) as a Go tool dependency, so that the rules in
// deploy/observability are checked and unit-tested by the real promtool
// without Prometheus's dependency tree in the main module. It holds no
// code; scripts/install-promtool.sh builds the tool into a per-version
// cache.
package promtool
