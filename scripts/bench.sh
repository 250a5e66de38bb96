#!/usr/bin/env bash
# Serving benchmarks (store/bench_test.go, BenchmarkServing) with fixed bench
# times, in four go test runs; each starts its own redis-server and builds the
# models it needs (a "# setup" line per model). Within one run every
# sub-benchmark talks to the same server.
#
#   one client, fixed iteration counts (p50-us, p99-us; with 30 samples the
#   p99 is the slowest call):
#     2000x  PING, EVALSHA `return 1`, arms=50, arms=200, arms=20000/cands=50
#     200x   arms=2000
#     30x    arms=20000
#   16 clients (ops/s), a fixed duration each: SAT_TIME, default 1.5s
#
# Usage: scripts/bench.sh [output-file]   (default: a new file in $TMPDIR)
# Environment: COUNT (default 3), SAT_TIME (default 1.5s),
#              SKIP_SLOW=0 to also run arms=20000/op=client-pipeline/clients=16
#              (skipped by default to keep the set within ~5 minutes: about
#              4 ops/s, some 5 s and 0.8 GB of RAM per count).
# The whole set takes about 4 minutes on a 2-core machine.
#
# Compare two outputs with benchstat (golang.org/x/perf/cmd/benchstat), e.g.
#   benchstat -col /op -filter '/clients:1' old.txt
set -euo pipefail

cd "$(dirname "$0")/.."

out=${1:-${TMPDIR:-/tmp}/redbandit-bench-$(date +%Y%m%d-%H%M%S).txt}
count=${COUNT:-3}
sat=${SAT_TIME:-1.5s}
skip_slow=${SKIP_SLOW:-1}

B='BenchmarkServing'
one_fast="$B/op=/clients=1\$|$B/arms=(50|200)\$/op=/clients=1\$|$B/arms=20000\$/cands=/op=/clients=1\$"
one_2k="$B/arms=2000\$/op=/clients=1\$"
one_20k="$B/arms=20000\$/op=/clients=1\$"
saturated="$B/op=/clients=16\$|$B/arms=/op=/clients=16\$|$B/arms=/cands=/op=/clients=16\$"
skip=()
if [ "$skip_slow" = 1 ]; then
	skip=(-skip "$B/arms=20000\$/op=client-pipeline\$/clients=16\$")
fi

: >"$out"
start=$SECONDS
{
	# The script and the store package change under this benchmark: record
	# exactly what was measured.
	echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD -- lua store 2>/dev/null || echo ' (lua/ or store/ modified)')"
	echo "# sha1 lua/recommend.lua $(sha1sum lua/recommend.lua | cut -d' ' -f1), $(redis-server --version | cut -d' ' -f3), $(go version | cut -d' ' -f3), $(nproc) CPUs"
} | tee -a "$out"
run() {
	local benchtime=$1 pattern=$2
	local cmd=(go test ./store -run '^$' -bench "$pattern" "${skip[@]}" -benchtime "$benchtime" -count "$count" -timeout 20m)
	{ printf '#'; printf ' %q' "${cmd[@]}"; echo; } | tee -a "$out"
	"${cmd[@]}" 2>&1 | tee -a "$out"
}

run 2000x "$one_fast"
run 200x "$one_2k"
run 30x "$one_20k"
run "$sat" "$saturated"
if [ "$skip_slow" = 1 ]; then
	echo "# skipped arms=20000/op=client-pipeline/clients=16 (SKIP_SLOW=0 runs it)" | tee -a "$out"
fi
echo "# total $((SECONDS - start))s" | tee -a "$out"
echo "# raw output written to $out"
