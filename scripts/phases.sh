#!/usr/bin/env bash
# Where the time of one recommendation goes inside Redis: cut-down copies of
# lua/recommend.lua that return after each phase, each called 2,000 times by
# redis-benchmark (one client) against a synthetic reference-shop model, and
# timed by Redis itself (INFO commandstats, usec_per_call). Differences
# between consecutive rows are the phases' costs.
#
# Usage: scripts/phases.sh [PRODUCTS ...]   (default 1 200 1000)
#
# The cuts inside the scan return during the first block of 1,024 products,
# so the phase rows are exact for catalogues of up to 1,024 products only.
# The contexts are one-hot in every group: the phases are those of the rows
# of one-hot groups (docs/FORMAT.md).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/scratch.sh
cli() { redis-cli -p "$port" "$@"; }

python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
src = open("lua/recommend.lua").read()
# A cut inside a phase's function returns 1 from it, which main returns
# as the phase's error.
cuts = [
    ("set-up", "local e, d, lambda, n, B, format, groups, fpats, gmap = metadata()\n"),
    ("+ metadata, arguments", "local pat\ne, pat = pattern(d, x, #S, format, groups, gmap)\n"),
    ("+ one-hot groups, pattern, coefficients", "if n == 0 then return {} end\n"),
    ("+ HMGET of the rows", "    local a = 1\n    if nc == 3 then\n"),
    ("+ decode, score, top-k", "  end\nend\n\n-- acc[a] +="),
]
with open(f"{work}/phases.txt", "w") as out:
    for i, (name, marker) in enumerate(cuts):
        if src.count(marker) != 1:
            sys.exit(f"phases.sh: marker for {name!r} not found once in recommend.lua")
        open(f"{work}/cut{i}.lua", "w").write(src.replace(marker, "do return 1 end\n" + marker, 1))
        out.write(f"cut{i}.lua\t{name}\n")
    open(f"{work}/cut{len(cuts)}.lua", "w").write(src)
    out.write(f"cut{len(cuts)}.lua\t+ product ids, reply (the whole script)\n")
PY

ctx="0.3 0.5 0.7 1 0 0 0 1 0 0 1 0 0 1 0"
r1=$(cli script load "return 1")
echo "# $(redis-server --version | cut -d' ' -f3), $(nproc) CPUs; Redis µs per call (INFO commandstats), 2,000 calls each"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1 200 1000)
for n in "${sizes[@]}"; do
	model=$("$work/redbandit" --redis "redis://127.0.0.1:$port/0" --model ph loadtest --products "$n" --keep -n 1 --json -q | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["model"])')
	echo "## $n products (model $model)"
	cli config resetstat >/dev/null
	redis-benchmark -p "$port" -c 1 -n 2000 evalsha "$r1" 1 "rb:{$model}" 5 0.1 $ctx >/dev/null 2>&1
	printf '  %-45s %8s\n' "EVALSHA of 'return 1', same arguments" "$(cli info commandstats | grep cmdstat_evalsha | sed 's/.*usec_per_call=\([0-9.]*\).*/\1/')"
	while IFS=$'\t' read -r file name; do
		sha=$(cli script load "$(cat "$work/$file")")
		cli config resetstat >/dev/null
		redis-benchmark -p "$port" -c 1 -n 2000 evalsha "$sha" 1 "rb:{$model}" 5 0.1 $ctx >/dev/null 2>&1
		printf '  %-45s %8s\n' "$name" "$(cli info commandstats | grep cmdstat_evalsha | sed 's/.*usec_per_call=\([0-9.]*\).*/\1/')"
	done <"$work/phases.txt"
done
