// Package bench holds the benchmarks and size measurements of Signet's
// credential profiles (classic, hybrid, pq): issuance, verification and
// JWT signing. It has no non-test code; see docs/pq-formats.md for figures.
//
//	go test -run TestSizes -v ./pq/bench/
//	go test -run '^$' -bench . -benchmem ./pq/bench/
package bench
