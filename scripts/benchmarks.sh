#!/usr/bin/env bash
# The published benchmark table of docs/BENCHMARKS.md, with `redbandit
# loadtest` against one fresh redis-server (the project's defaults, no
# persistence) and one sidecar, both on loopback:
#
#   for 200, 2,000 and 20,000 products (d = 15, the reference shop's layout):
#     one client   loadtest --compare ping,redis,fcall,http-ping,http,client-side -c 1
#     saturation   the same with -c 16 for a fixed duration
#   throughput against clients: redis target, 200 products, 1..32 clients
#
# Every configuration runs RUNS times (default 3); the summary gives the
# median and the range. Requests go through loadtest's lean clients
# (RESP and HTTP/1.1 by hand, like redis-benchmark and wrk; CLIENT=lean,
# the default) or through rueidis and net/http (CLIENT=go); client-side
# always uses rueidis. Raw JSON lines go to $OUT/raw.jsonl, the summary to
# $OUT/summary.md. Takes about 8 minutes on a 2-core machine.
#
# Usage: scripts/benchmarks.sh [OUT-DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-${TMPDIR:-/tmp}/redbandit-benchmarks}
runs=${RUNS:-3}
client=${CLIENT:-lean}
mkdir -p "$out"
: >"$out/raw.jsonl"

go build -o "$out/redbandit" ./cmd/redbandit
rb=$out/redbandit

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
hport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
	--dir "$out" --logfile "$out/redis.log" &
rpid=$!
export REDBANDIT_REDIS=redis://127.0.0.1:$rport/0
for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$rb" --log-level warn sidecar --listen "127.0.0.1:$hport" &
spid=$!
trap 'kill $spid $rpid 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 1 50); do curl -sf "127.0.0.1:$hport/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
url=http://127.0.0.1:$hport

{
	echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo none)"
	echo "# $(redis-server --version | cut -d' ' -f3), $(go version | cut -d' ' -f3), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); loadtest --client $client; sidecar --procs default (Go's GOMAXPROCS less one)"
} | tee "$out/header.txt"

lt() { # label, then loadtest arguments
	local label=$1
	shift
	"$rb" --log-level warn loadtest --url "$url" --client "$client" --json -q "$@" | sed "s|^{|{\"label\":\"$label\",|" | tee -a "$out/raw.jsonl" >/dev/null
}

all=ping,redis,fcall,http-ping,http,client-side
for run in $(seq 1 "$runs"); do
	echo "run $run/$runs" >&2
	lt "200/1" --products 200 --compare "$all" -c 1 -n 2000 --warmup 300ms
	lt "200/16" --products 200 --compare "$all" -c 16 --duration 3s --warmup 300ms
	lt "2000/1" --products 2000 --compare "$all" -c 1 -n 300 --warmup 300ms
	lt "2000/16" --products 2000 --compare "$all" -c 16 --duration 3s --warmup 300ms
	lt "20000/1" --products 20000 --compare ping,redis,fcall,http -c 1 -n 40
	lt "20000/1" --products 20000 --target client-side -c 1 -n 10
	lt "20000/16" --products 20000 --compare ping,redis,fcall,http -c 16 --duration 3s
	for c in 1 2 4 8 16 32; do
		lt "curve/$c" --products 200 --target redis -c "$c" --duration 2s --warmup 300ms
	done
done

python3 - "$out" <<'PY'
import json, statistics, sys, collections
out = sys.argv[1]
rows = collections.defaultdict(list)
for line in open(f"{out}/raw.jsonl"):
    r = json.loads(line)
    rows[(r["label"], r["target"])].append(r)
def med(vals):
    vals = sorted(vals)
    return statistics.median(vals), vals[0], vals[-1]
def fmt(v, spread=True):
    m, lo, hi = v
    f = (lambda x: f"{x:,.0f}") if m >= 100 else (lambda x: f"{x:.3g}")
    return f"{f(m)} [{f(lo)}–{f(hi)}]" if spread and len(set((lo, hi))) > 1 else f(m)
lines = [open(f"{out}/header.txt").read().strip(), "",
         "| products | target | 1 client: p50 ms | p99 ms | rps | Redis µs/request | 16 clients: rps | p99 ms | errors |",
         "|---|---|---|---|---|---|---|---|---|"]
for n in ("200", "2000", "20000"):
    for t in ("ping", "redis", "fcall", "http-ping", "http", "client-side"):
        one, sat = rows.get((f"{n}/1", t), []), rows.get((f"{n}/16", t), [])
        if not one and not sat:
            continue
        errs = sum(r["errors"] for r in one + sat)
        c1 = [fmt(med([r["latency_ms"][k] for r in one])) for k in ("p50", "p99")] + [fmt(med([r["rps"] for r in one])), fmt(med([r["server_us"] for r in one]))] if one else ["—"] * 4
        c16 = [fmt(med([r["rps"] for r in sat])), fmt(med([r["latency_ms"]["p99"] for r in sat]))] if sat else ["—", "—"]
        lines.append(f"| {int(n):,} | {t} | " + " | ".join(c1 + c16) + f" | {errs} |")
# The sidecar against direct EVALSHA, paired within each loadtest run (the
# targets of one --compare run back to back): the p50 it adds with one
# client, and its share of the throughput with 16.
# With one client, from the sidecar's own metrics (loadtest's sidecar_us,
# sidecar_redis_us) and Redis's (server_us): the sidecar's handler time
# without its Redis call (its own work), and its Redis call less Redis's
# time (the round trip to Redis and the wake-ups on the way).
lines += ["", "| products | sidecar adds at p50, 1 client (ms) | its own work, 1 client (µs) | its Redis call less Redis's time (µs) | sidecar rps / direct rps, 16 clients |", "|---|---|---|---|---|"]
for n in ("200", "2000", "20000"):
    one = list(zip(rows.get((f"{n}/1", "redis"), []), rows.get((f"{n}/1", "http"), [])))
    sat = list(zip(rows.get((f"{n}/16", "redis"), []), rows.get((f"{n}/16", "http"), [])))
    if not one and not sat:
        continue
    added = fmt(med([h["latency_ms"]["p50"] - r["latency_ms"]["p50"] for r, h in one])) if one else "—"
    timed = [h for r, h in one if h.get("sidecar_us")]
    own = fmt(med([h["sidecar_us"] - h["sidecar_redis_us"] for h in timed])) if timed else "—"
    trip = fmt(med([h["sidecar_redis_us"] - h["server_us"] for h in timed])) if timed else "—"
    share = fmt(med([h["rps"] / r["rps"] for r, h in sat])) if sat else "—"
    lines.append(f"| {int(n):,} | {added} | {own} | {trip} | {share} |")
lines += ["", "| clients (redis, 200 products) | rps | p50 ms | p99 ms |", "|---|---|---|---|"]
for c in (1, 2, 4, 8, 16, 32):
    rs = rows.get((f"curve/{c}", "redis"), [])
    if rs:
        lines.append(f"| {c} | {fmt(med([r['rps'] for r in rs]))} | {fmt(med([r['latency_ms']['p50'] for r in rs]))} | {fmt(med([r['latency_ms']['p99'] for r in rs]))} |")
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
