#!/usr/bin/env bash
# Local scoring in the sidecar (issue #19), with `redbandit loadtest`
# against one fresh redis-server (no persistence) and two sidecars on
# loopback: one scoring with the script (--scoring redis, the http target)
# and one scoring from its own copy of the model (--scoring local, the
# http-local target), both with the default --procs:
#
#   for 200 and 20,000 products (d = 15, the reference shop's layout):
#     one client   loadtest --compare redis,http-ping,http,http-local -c 1
#     saturation   the same with -c 16 for a fixed duration
#   each after a warm-up (1 s at 20,000 products: a local copy folds a
#   one-hot pattern's values for every product on the pattern's first
#   request, ~1.5 ms there, and the reference shop has 80 patterns)
#
# Every configuration runs RUNS times (default 3); the summary gives the
# median and the range, and the ratios within each run: the local
# sidecar's saturated throughput over direct EVALSHA's, and its one-client
# p50 less http-ping's. Raw JSON lines go to $OUT/raw.jsonl, the summary
# to $OUT/summary.md. About 6 minutes on a 2-core machine.
#
# Usage: scripts/bench-local.sh [OUT-DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-${TMPDIR:-/tmp}/redbandit-bench-local}
runs=${RUNS:-3}
mkdir -p "$out"
: >"$out/raw.jsonl"

go build -o "$out/redbandit" ./cmd/redbandit
rb=$out/redbandit

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
hport=$(free_port)
lport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
	--dir "$out" --logfile "$out/redis.log" &
rpid=$!
export REDBANDIT_REDIS=redis://127.0.0.1:$rport/0
for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$rb" --log-level warn sidecar --listen "127.0.0.1:$hport" &
spid=$!
"$rb" --log-level warn sidecar --listen "127.0.0.1:$lport" --scoring local &
lpid=$!
trap 'kill $spid $lpid $rpid 2>/dev/null; wait 2>/dev/null' EXIT
for p in $hport $lport; do
	for _ in $(seq 1 50); do curl -sf "127.0.0.1:$p/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
done

{
	echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo none)"
	echo "# $(redis-server --version | cut -d' ' -f3), $(go version | cut -d' ' -f3), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg); loadtest --client lean; sidecars --procs default"
} | tee "$out/header.txt"

lt() { # label, then loadtest arguments
	local label=$1
	shift
	"$rb" --log-level warn loadtest --url "http://127.0.0.1:$hport" --local-url "http://127.0.0.1:$lport" --client lean --json -q "$@" |
		sed "s|^{|{\"label\":\"$label\",|" | tee -a "$out/raw.jsonl" >/dev/null
}

all=redis,http-ping,http,http-local
for run in $(seq 1 "$runs"); do
	echo "run $run/$runs" >&2
	lt "200/1/$run" --products 200 --compare "$all" -c 1 -n 2000 --warmup 300ms
	lt "200/16/$run" --products 200 --compare "$all" -c 16 --duration 3s --warmup 300ms
	lt "20000/1/$run" --products 20000 --compare "$all" -c 1 -n 200 --warmup 1s
	lt "20000/16/$run" --products 20000 --compare "$all" -c 16 --duration 3s --warmup 1s
done

python3 - "$out" <<'PY'
import json, statistics, sys, collections
out = sys.argv[1]
rows = collections.defaultdict(list)      # (size, clients, target) -> results over runs
byrun = collections.defaultdict(dict)     # (size, clients, run) -> target -> result
for line in open(f"{out}/raw.jsonl"):
    r = json.loads(line)
    n, c, run = r["label"].split("/")
    rows[(n, c, r["target"])].append(r)
    byrun[(n, c, run)][r["target"]] = r
def med(vals):
    vals = sorted(vals)
    return statistics.median(vals), vals[0], vals[-1]
def fmt(v):
    m, lo, hi = v
    f = (lambda x: f"{x:,.0f}") if m >= 100 else (lambda x: f"{x:.3g}")
    return f"{f(m)} [{f(lo)}–{f(hi)}]" if lo != hi else f(m)
lines = [open(f"{out}/header.txt").read().strip(), "",
         "| products | target | 1 client: p50 ms | p99 ms | rps | 16 clients: rps | p99 ms | scored locally | errors |",
         "|---|---|---|---|---|---|---|---|---|"]
for n in ("200", "20000"):
    for t in ("redis", "http-ping", "http", "http-local"):
        one, sat = rows.get((n, "1", t), []), rows.get((n, "16", t), [])
        if not one and not sat:
            continue
        errs = sum(r["errors"] for r in one + sat)
        c1 = [fmt(med([r["latency_ms"][k] for r in one])) for k in ("p50", "p99")] + [fmt(med([r["rps"] for r in one]))] if one else ["—"] * 3
        c16 = [fmt(med([r["rps"] for r in sat])), fmt(med([r["latency_ms"]["p99"] for r in sat]))] if sat else ["—", "—"]
        share = fmt(med([100 * r.get("local_share", 0) for r in one + sat])) + "%" if t == "http-local" else "—"
        lines.append(f"| {int(n):,} | {t} | " + " | ".join(c1 + c16) + f" | {share} | {errs} |")
lines += ["", "| products | http-local rps / redis rps, 16 clients | http-local p50 − http-ping p50, 1 client (ms) | http-local p50, 1 client (ms) |", "|---|---|---|---|"]
for n in ("200", "20000"):
    ratio = [r["http-local"]["rps"] / r["redis"]["rps"] for (m, c, _), r in byrun.items() if m == n and c == "16" and "http-local" in r and "redis" in r]
    added = [r["http-local"]["latency_ms"]["p50"] - r["http-ping"]["latency_ms"]["p50"] for (m, c, _), r in byrun.items() if m == n and c == "1" and "http-local" in r and "http-ping" in r]
    p50 = [r["http-local"]["latency_ms"]["p50"] for (m, c, _), r in byrun.items() if m == n and c == "1" and "http-local" in r]
    if ratio or added:
        lines.append(f"| {int(n):,} | {fmt(med(ratio)) if ratio else '—'}× | {fmt(med(added)) if added else '—'} | {fmt(med(p50)) if p50 else '—'} |")
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
