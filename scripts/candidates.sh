#!/usr/bin/env bash
# What a candidate list costs inside Redis: cut-down copies of
# lua/recommend.lua that return after each phase of the CANDIDATES path,
# each called 3,000 times with a random context and a random list of 50
# product ids of a 20,000-product reference-shop model (random lists miss
# the CPU's caches as real traffic does; redis-benchmark repeats one list),
# timed by Redis itself (INFO commandstats, usec_per_call). Then the floor:
# the HMGET of 50 random small fields (ix:<id>), the whole script with one
# fixed list (its rows stay in the CPU's caches, as a 50-product model's
# do), and a 50-product model's whole scan for comparison. Differences between consecutive rows are the
# phases' costs.
#
# Usage: scripts/candidates.sh [PRODUCTS]   (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
products=${1:-20000}
. scripts/scratch.sh
model() { "$work/redbandit" --log-level warn --redis "redis://127.0.0.1:$port/0" --model "$1" loadtest --products "$2" --keep -n 1 --json -q |
	python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["model"])'; }
big=$(model cand "$products")
small=$(model small 50)
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo none); $(redis-server --version | cut -d' ' -f3), $(nproc) CPUs"
echo "# Redis µs per call (INFO commandstats), 3,000 calls each, random contexts and lists of 50 of $products products"

python3 - "$port" "$big" "$small" "$products" <<'PY'
import random, socket, sys
port, big, small, products = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
src = open("lua/recommend.lua").read()
cuts = [
    ("arguments parsed", "local pat\ne, pat = pattern(d, x, #S, format, groups, gmap)\n"),
    ("+ one-hot groups, pattern, coefficients", "if cfrom then\n"),
    ("+ candidates deduplicated, field names built", "  local rows = hmget(fields)\n"),
    ("+ HMGET of the candidates' rows", "  for c = 1, #fields do\n    local row = rows[c]"),
    ("+ decode, score, top-k", "  local items, scores = ranked()\n  for i = 1, #items do items[i] = ids[items[i]] end\n"),
]
# A cut inside a phase's function returns 1 from it, which main returns
# as the phase's error.
scripts = []
for name, marker in cuts:
    if src.count(marker) != 1:
        sys.exit(f"candidates.sh: marker for {name!r} not found once in recommend.lua")
    scripts.append((name, src.replace(marker, "do return 1 end\n" + marker, 1)))
scripts.append(("+ product ids, reply (the whole script)", src))

sock = socket.create_connection(("127.0.0.1", port))
rf = sock.makefile("rb")
def enc(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)
def read():
    line = rf.readline()
    t, rest = line[:1], line[1:-2]
    if t == b"+": return rest.decode()
    if t == b"-": raise RuntimeError(rest.decode())
    if t == b":": return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0: return None
        data = rf.read(n + 2)[:-2]
        return data
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [read() for _ in range(n)]
    raise RuntimeError(f"unexpected reply {line!r}")
def call(*args):
    sock.sendall(enc(*args)); return read()
def usec_per_call(cmd):
    info = call("INFO", "commandstats").decode()
    for line in info.splitlines():
        if line.startswith(f"cmdstat_{cmd}:"):
            return float(line.split("usec_per_call=")[1].split(",")[0])
    return 0.0
def context(rng):
    x = [f"{1 - rng.random():.6f}" for _ in range(3)]
    for size in (2, 5, 3, 2):  # loadtest's groups: gender, traffic source, time of day, weekday
        v = ["0"] * size
        v[rng.randrange(size)] = "1"
        x += v
    return x
def timed(label, make, n=3000, batch=50):
    rng = random.Random(7)
    call("CONFIG", "RESETSTAT")
    for lo in range(0, n, batch):
        sock.sendall(b"".join(make(rng) for _ in range(batch)))
        for _ in range(batch):
            read()
    print(f"  {label:45s} {usec_per_call('evalsha'):8.1f}")
ids = lambda rng: [f"p{rng.randrange(products)}" for _ in range(50)]
one = call("SCRIPT", "LOAD", "return 1").decode()
timed("EVALSHA of 'return 1', same arguments", lambda rng: enc("EVALSHA", one, 1, "rb:{%s}" % big, 5, 0.1, *context(rng), "CANDIDATES", 50, *ids(rng)))
for name, text in scripts:
    sha = call("SCRIPT", "LOAD", text).decode()
    timed(name, lambda rng: enc("EVALSHA", sha, 1, "rb:{%s}" % big, 5, 0.1, *context(rng), "CANDIDATES", 50, *ids(rng)))
probe = call("SCRIPT", "LOAD", "local f = {} for i = 1, #ARGV do f[i] = 'ix:' .. ARGV[i] end return #redis.call('HMGET', KEYS[1], unpack(f))").decode()
timed("floor: HMGET of 50 random ix:<id> fields", lambda rng: enc("EVALSHA", probe, 1, "rb:{%s}" % big, *ids(rng)))
whole = call("SCRIPT", "LOAD", src).decode()
hot = ["p%d" % (i * (products // 50)) for i in range(50)]
timed("the whole script, one fixed list (cache-hot)", lambda rng: enc("EVALSHA", whole, 1, "rb:{%s}" % big, 5, 0.1, *context(rng), "CANDIDATES", 50, *hot))
timed("a 50-product model, whole scan", lambda rng: enc("EVALSHA", whole, 1, "rb:{%s}" % small, 5, 0.1, *context(rng)))
PY
