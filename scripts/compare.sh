#!/usr/bin/env bash
# A/B timing of two versions of recommend.lua inside one fresh redis-server:
# each call goes to both, back to back (the first of each pair alternating),
# one as EVALSHA and the other as EVALSHA_RO (swapped every round), so that
# Redis times them apart (INFO commandstats) under the same conditions —
# on a shared machine, runs of one version after the other differ by more
# than the changes worth measuring. It also requires the same reply from
# both for every call.
#
# Workloads (loadtest's synthetic reference-shop models, d = 15, and one
# of d = 20 without groups; k = 5, alpha = 0.1 unless said): the scan of
# 200 products for contexts one-hot in every group (k 5 and 50), of 20,000,
# and for a context that is not one-hot (the general columns); the columns
# of a d = 20 model of 2,000 products; candidate lists of 50 random products
# of 20,000 (one-hot and not), of all 200 in a random order, of one; and
# the scan of 200 less 10 excluded.
#
# Usage: scripts/compare.sh OLD.lua [NEW.lua] [ROUNDS]
#   NEW.lua defaults to lua/recommend.lua, ROUNDS to 10 (CALLS=600 calls
#   per workload and round; the long scans 100). Prints per workload the
#   median µs per call of each, their ratio, and the median, minimum and
#   maximum of the rounds' ratios.
#   e.g. scripts/compare.sh <(git show HEAD~1:lua/recommend.lua)
set -euo pipefail
old=$(cat "$1")
new=$(cat "${2:-lua/recommend.lua}")
rounds=${3:-10}
cd "$(dirname "$0")/.."
. scripts/scratch.sh
printf '%s' "$old" >"$work/old.lua"
printf '%s' "$new" >"$work/new.lua"
model() { "$work/redbandit" --log-level warn --redis "redis://127.0.0.1:$port/0" --model "$1" loadtest --products "$2" "${@:3}" --keep -n 1 --json -q |
	python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["model"])'; }
m200=$(model small 200)
mbig=$(model big 20000)
mgen=$(model gen 2000 --dim 20)
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo none); $(redis-server --version | cut -d' ' -f3), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$port" "$work" "$m200" "$mbig" "$mgen" "$rounds" "${CALLS:-600}" <<'PY'
import random, socket, statistics, sys
port, work, m200, mbig, mgen = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
rounds, calls = int(sys.argv[6]), int(sys.argv[7])
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
    if t == b"-": return ("error", rest.decode())
    if t == b":": return int(rest)
    if t == b"$":
        n = int(rest)
        return None if n < 0 else rf.read(n + 2)[:-2]
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [read() for _ in range(n)]
    raise RuntimeError(f"unexpected reply {line!r}")
def call(*args):
    sock.sendall(enc(*args))
    return read()
def usec_per_call(cmd):
    for line in call("INFO", "commandstats").decode().splitlines():
        if line.startswith(f"cmdstat_{cmd}:"):
            return float(line.split("usec_per_call=")[1].split(",")[0])
    return 0.0
def shop(rng, onehot=True):
    x = [f"{1 - rng.random():.6f}" for _ in range(3)]
    for size in (2, 5, 3, 2):  # loadtest's groups
        v = ["0"] * size
        v[rng.randrange(size)] = "1"
        x += v
    if not onehot:
        x[3] = "0.5"
    return x
def dense(rng):
    return [f"{rng.random():.6f}" if rng.random() < 0.35 else "0" for _ in range(20)]
big = int(call("HGET", "rb:{%s}" % mbig, "arms"))
some = lambda rng, n, of: [f"p{rng.randrange(of)}" for _ in range(n)]
workloads = {
    "scan 200":             (m200, lambda r: (5, 0.1, *shop(r))),
    "scan 200, k 50":       (m200, lambda r: (50, 0.1, *shop(r))),
    "scan 20,000":          (mbig, lambda r: (5, 0.1, *shop(r))),
    "scan 200, not 1-hot":  (m200, lambda r: (5, 0.1, *shop(r, False))),
    "columns d 20, 2,000":  (mgen, lambda r: (5, 0.1, *dense(r))),
    "50 cand. of 20,000":   (mbig, lambda r: (5, 0.1, *shop(r), "CANDIDATES", 50, *some(r, 50, big))),
    "  the same, not 1-hot": (mbig, lambda r: (5, 0.1, *shop(r, False), "CANDIDATES", 50, *some(r, 50, big))),
    "200 cand. of 200":     (m200, lambda r: (5, 0.1, *shop(r), "CANDIDATES", 200, *r.sample([f"p{i}" for i in range(200)], 200))),
    "1 cand. of 200":       (m200, lambda r: (5, 0.1, *shop(r), "CANDIDATES", 1, *some(r, 1, 200))),
    "scan 200, 10 excluded": (m200, lambda r: (5, 0.1, *shop(r), "EXCLUDE", 10, *some(r, 10, 200))),
}
long = {"scan 20,000", "columns d 20, 2,000"}
sha = {v: call("SCRIPT", "LOAD", open(f"{work}/{v}.lua").read()).decode() for v in ("old", "new")}
res = {w: {"old": [], "new": []} for w in workloads}
for rd in range(rounds):
    cmds = {"old": "EVALSHA", "new": "EVALSHA_RO"} if rd % 2 == 0 else {"old": "EVALSHA_RO", "new": "EVALSHA"}
    for w, (model, make) in workloads.items():
        rng = random.Random(rd * 1000 + 7)
        call("CONFIG", "RESETSTAT")
        for _ in range(0, 100 if w in long else calls, 50):
            batch = [make(rng) for _ in range(50)]
            sock.sendall(b"".join(enc(cmds[v], sha[v], 1, "rb:{%s}" % model, *args)
                                  for i, args in enumerate(batch) for v in (("old", "new") if i % 2 == 0 else ("new", "old"))))
            for args in batch:
                a, b = read(), read()
                if a != b:
                    sys.exit(f"{w}: the versions answer differently to {args}:\n  {a}\n  {b}")
        for v in ("old", "new"):
            res[w][v].append(usec_per_call(cmds[v].lower()))
print(f"# µs per call, medians of {rounds} rounds; ratio new/old, and the rounds' ratios: median, min..max")
print(f"  {'':24s} {'old':>9s} {'new':>9s} {'ratio':>6s}")
for w in workloads:
    o, n = statistics.median(res[w]["old"]), statistics.median(res[w]["new"])
    rr = [b / a for a, b in zip(res[w]["old"], res[w]["new"])]
    print(f"  {w:24s} {o:9.1f} {n:9.1f} {n / o:6.3f}   {statistics.median(rr):.3f}, {min(rr):.3f}..{max(rr):.3f}")
PY
