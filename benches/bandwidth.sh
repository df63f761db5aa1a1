#!/usr/bin/env bash
# Benchmark, not a test: 3 concurrent downloads from one URL group limited to RATE (default 4 MiB/s) for
# SECONDS (default 10). Prints the aggregate rate against the limit, each client's share, and the CPU time
# bcs used. Aims (issue 6): aggregate within ±5% of the limit, each client within ±15% of a third, server CPU
# under 5% of one core. Needs curl. Binds 127.0.0.1 only and stops by itself.
set -euo pipefail

RATE=${RATE:-4MiB/s}
SECONDS_=${SECONDS_:-10}
CLIENTS=${CLIENTS:-3}
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin bcs
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
truncate -s 1G "$work/big.bin"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BCS_LOG=warn target/release/bcs host --bind 127.0.0.1 --rate "$RATE" --url "http://+:$port/bw/" "$work/big.bin" >/dev/null &
pid=$!
for _ in $(seq 100); do curl -sf -o /dev/null -r 0-0 "http://127.0.0.1:$port/bw/big.bin" && break; sleep 0.1; done

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
cpu_before=$(cpu)
for i in $(seq "$CLIENTS"); do
    curl -s -o /dev/null --max-time "$SECONDS_" -w '%{size_download}\n' "http://127.0.0.1:$port/bw/big.bin" \
        >"$work/client$i" || true &
done
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
cpu_after=$(cpu)

limit=$(python3 - "$RATE" <<'PY'
import re, sys
m = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]*)(/s)?\s*", sys.argv[1])
units = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
         "kib": 1024, "mib": 1024**2, "gib": 1024**3}
print(int(float(m.group(1)) * units[m.group(2).lower()]))
PY
)
total=0
for i in $(seq "$CLIENTS"); do total=$((total + $(cat "$work/client$i"))); done
echo "limit $RATE = $limit B/s, $CLIENTS clients, ${SECONDS_} s"
awk -v t="$total" -v s="$SECONDS_" -v l="$limit" \
    'BEGIN {printf "aggregate: %.0f B/s = %.3f x the limit\n", t / s, t / s / l}'
for i in $(seq "$CLIENTS"); do
    awk -v b="$(cat "$work/client$i")" -v t="$total" -v n="$CLIENTS" -v i="$i" \
        'BEGIN {printf "client %d: %d bytes = %.3f of the total (%.3f x a fair share)\n", i, b, b / t, b / t * n}'
done
awk -v a="$cpu_before" -v b="$cpu_after" -v hz="$ticks" -v s="$SECONDS_" \
    'BEGIN {printf "bcs CPU: %.2f s over %d s = %.2f%% of one core\n", (b - a) / hz, s, (b - a) / hz / s * 100}'
