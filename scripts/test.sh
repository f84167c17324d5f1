#!/usr/bin/env bash
# The project's test command (README "Test"): vet, golangci-lint, the full Go test suite
# with real etcd, real sockets, go-spiffe, OpenSSL 3.5, real SPIRE binaries,
# a real Vault dev server, a real kube-apiserver and promtool (each built once
# per version into a cache), then the Go 1.27 checks.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "--- go version: $(go version)"
echo "--- building SPIRE v1.13.3 test binaries (cached)"
SIGNET_SPIRE_DIR="$(./scripts/install-spire.sh)"
export SIGNET_SPIRE_DIR

echo "--- building the Vault dev server used by the tests (cached; ~20 min cold)"
SIGNET_VAULT_BIN="$(./scripts/install-vault.sh)"
export SIGNET_VAULT_BIN

echo "--- building kube-apiserver v1.37.2 used by the k8s tests (cached; ~4 min cold)"
SIGNET_KUBE_APISERVER_BIN="$(./scripts/install-kube-apiserver.sh)"
export SIGNET_KUBE_APISERVER_BIN

echo "--- building promtool v0.316.0 for the Prometheus rule tests (cached; cold: 190 s CPU, 8.5 min on 2 busy cores)"
SIGNET_PROMTOOL_BIN="$(./scripts/install-promtool.sh)"
export SIGNET_PROMTOOL_BIN

echo "--- Debian packages the tests use as real peers (scripts/install-debs.sh)"
./scripts/install-debs.sh

echo "--- go vet"
go vet ./...
( cd conformance/bench && go vet ./... )

echo "--- golangci-lint (pinned, cached; .golangci.yml)"
lint="$(./scripts/install-golangci-lint.sh)"
"$lint" run ./...
( cd conformance/bench && "$lint" run ./... )

echo "--- generated code is up to date (pinned protoc and plugins)"
./scripts/check-generate.sh

echo "--- go test"
go test -count=1 -timeout 30m ./...

echo "--- go test: the benchmark harness's own module (smoke mode)"
( cd conformance/bench && go test -count=1 -timeout 10m ./... )

echo "--- go test (Go 1.27: crypto/x509 ML-DSA)"
GOTOOLCHAIN=go1.27.3 go test -count=1 -timeout 10m ./pq/... ./conformance/openssl/...

echo "--- fuzz: every target briefly (scripts/fuzz.sh 5m for a real campaign)"
FUZZ_PARALLEL=2 ./scripts/fuzz.sh 3s
