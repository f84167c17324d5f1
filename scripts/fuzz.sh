#!/usr/bin/env bash
# Runs every Go fuzz target of the module, one at a time, each for DURATION
# (default 2m; CI passes a few seconds), and fails if any target finds a
# crash. Targets are found by grepping for `func FuzzXxx(` in _test.go files,
# so a new target is picked up without editing this script.
#
#   scripts/fuzz.sh [DURATION] [PATTERN]
#
# DURATION is a go test -fuzztime value (90s, 5m, 10000x). PATTERN, if
# given, keeps only targets whose "package/FuzzName" matches it (grep -E).
# FUZZ_PARALLEL sets the number of fuzzing workers (default 1: the machine
# is shared), FUZZ_MINIMIZE the time spent minimizing each new input
# (default 5s: minimizing kilobyte-sized PQ inputs for the default 60s
# stalls the fuzzer). A crashing input is written by go test to
# <package>/testdata/fuzz/<FuzzName>/ — commit it as a regression seed;
# plain `go test` then replays it.
set -uo pipefail
cd "$(dirname "$0")/.."

duration="${1:-2m}"
pattern="${2:-}"
parallel="${FUZZ_PARALLEL:-1}"
minimize="${FUZZ_MINIMIZE:-5s}"
log_dir="$(mktemp -d)"
trap 'rm -rf "$log_dir"' EXIT

mapfile -t targets < <(grep -rEl --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . |
	grep -v '/testdata/' | sort | while read -r file; do
		dir="$(dirname "$file")"
		grep -Eo '^func Fuzz[A-Za-z0-9_]*' "$file" | sed "s|^func |${dir#./} |"
	done | sort -u)

failed=()
start=$(date +%s)
count=0
for t in "${targets[@]}"; do
	pkg="${t% *}" name="${t#* }"
	if [[ -n "$pattern" ]] && ! grep -Eq -- "$pattern" <<<"$pkg/$name"; then
		continue
	fi
	count=$((count + 1))
	log="$log_dir/$(tr / _ <<<"$pkg")_$name.log"
	t0=$(date +%s)
	status=FAIL
	for attempt in 1 2 3; do
		if nice go test -run '^$' -fuzz "^${name}\$" -fuzztime "$duration" -fuzzminimizetime "$minimize" \
			-parallel "$parallel" "./$pkg" >"$log" 2>&1; then
			status=ok
			break
		fi
		# Go 1.26's fuzz coordinator can report a bare "context deadline
		# exceeded" when -fuzztime ends while a worker is busy
		# (go.dev/issue/75804, fixed in Go 1.27). That is no finding: a
		# real one says "Failing input written to" (or is a panic, a test
		# failure or a hang, which print otherwise). Retry such a run; any
		# other failure counts at once.
		if grep -q 'Failing input written to' "$log" || ! grep -q '^    context deadline exceeded$' "$log" ||
			[[ $(grep -c -- '--- FAIL' "$log") -ne 1 ]]; then
			break
		fi
		echo "     $pkg $name: fuzz coordinator deadline race (go.dev/issue/75804), no input written; retrying" >&2
	done
	if [[ $status == FAIL ]]; then
		failed+=("$pkg $name")
	fi
	last="$(grep -E 'fuzz: elapsed:' "$log" | tail -1 | sed -E 's/.*(execs: [0-9]+).*(new interesting: [0-9]+).*/\1, \2/')"
	printf '%-4s %-28s %-28s %4ss  %s\n' "$status" "$pkg" "$name" "$(($(date +%s) - t0))" "$last"
	if [[ $status == FAIL ]]; then
		sed 's/^/    /' "$log" | tail -40
	fi
done
echo "--- fuzz: $count targets, ${duration} each, $(($(date +%s) - start))s in total, ${#failed[@]} failed"
if ((${#failed[@]} > 0)); then
	printf 'failed: %s\n' "${failed[@]}"
	echo "crash inputs are under <package>/testdata/fuzz/<FuzzName>/; re-run one with: go test -run '<FuzzName>/<file>' ./<package>"
	exit 1
fi
