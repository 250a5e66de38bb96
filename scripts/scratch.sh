# Sourced by scripts/phases.sh and scripts/candidates.sh: a scratch
# directory ($work) with the redbandit binary built into it, and a fresh
# redis-server without persistence on a free loopback port ($port, pid
# $rpid); both are removed when the sourcing script exits.
work=$(mktemp -d)
trap 'kill $rpid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/redbandit" ./cmd/redbandit
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" --logfile "$work/redis.log" &
rpid=$!
for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
