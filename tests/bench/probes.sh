#!/usr/bin/env bash
# What /healthz and /readyz cost the daemon, beside what a call costs it, for BENCHMARKS.md.
#
# One release daemon (no agent: probes record nothing either way). wrk asks /readyz as
# fast as 8 connections go, then /healthz, each for SECONDS; the daemon's CPU time from
# /proc over each run gives the CPU per probe. Then exai-load makes `version` calls
# (MCP 2026-07-28, stateless, 8 connections) for SECONDS with --cpu-pid: what one of the
# cheapest calls costs, the same way. Ratios are within this one run.
#
# Usage: tests/bench/probes.sh [SECONDS, default 5]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-5}
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh
command -v wrk >/dev/null || { echo "wrk is needed (Debian's package wrk)" >&2; exit 1; }

EXAI_WS_PORT=0 EXAI_EVENTS_SOCKET="$work/events.sock" "$bin/exai-daemon" 2>"$work/daemon.log" &
daemon=$!
pids+=("$daemon")
port=$(port_from "$work/daemon.log" "MCP listening")
ticks=$(getconf CLK_TCK)
cpu_s() { awk -v t="$ticks" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$daemon/stat"; }

for path in /readyz /healthz; do
    before=$(cpu_s)
    out=$(wrk -t2 -c8 -d"${secs}s" "http://127.0.0.1:$port$path")
    after=$(cpu_s)
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
    rate=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
    non2xx=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
    awk -v p="$path" -v n="$requests" -v r="$rate" -v b="$before" -v a="$after" -v bad="${non2xx:-0}" \
        'BEGIN { printf "%-8s %9.0f probes/s  %6.2f µs daemon CPU per probe  (non-2xx: %s)\n", p, r, (a - b) * 1e6 / n, bad }'
done
"$bin/exai-load" --url "http://127.0.0.1:$port/mcp" --stateless --sessions 8 --tool version \
    --duration "$secs" --warmup 1 --cpu-pid "$daemon" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print("version  %9.0f calls/s   %6.2f µs daemon CPU per call" % (r["calls_per_s"], r["cpu_us_per_call"]))'
