#!/usr/bin/env bash
# The agent's health endpoints under wrk, for BENCHMARKS.md ("The agent"): a release
# exai-agent with a connected release exai-daemon (so the report is healthy), then wrk
# (2 threads, CONNECTIONS connections, SECONDS s, --latency) against /health/live,
# /health/ready and /health. wrk, the agent and the daemon share the machine's cores.
# With PIN=1 the agent runs on CPU 0 and wrk on CPU 1, so neither preempts the other.
# Usage: tests/bench/agent-health.sh [SECONDS, default 10] [CONNECTIONS, default 64]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-64}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } >&2
# shellcheck source=tests/bench/lib.sh
. tests/bench/lib.sh
agent_cpu=(); wrk_cpu=()
if [ -n "${PIN:-}" ]; then agent_cpu=(taskset -c 0); wrk_cpu=(taskset -c 1); fi

EXAI_EVENTS_SOCKET="$work/events.sock" METRICS_PORT=0 HEALTH_CHECK_PORT=0 MONITORING_ENABLED=false \
    EXAI_HEALTH_INTERVAL_MS=1000 "${agent_cpu[@]}" "$bin/exai-agent" 2>"$work/agent.log" & pids+=($!)
health=$(port_from "$work/agent.log" "health listening")
EXAI_EVENTS_SOCKET="$work/events.sock" EXAI_WS_PORT=0 GLM_API_KEY=bench \
    GLM_API_URL="http://127.0.0.1:9/api/paas/v4" "$bin/exai-daemon" 2>"$work/daemon.log" & pids+=($!)
port_from "$work/daemon.log" "addr=" >/dev/null
# Wait for a round of checks that sees the daemon.
for _ in $(seq 100); do
    code=$(curl -s -o "$work/health.json" -w '%{http_code}' "http://127.0.0.1:$health/health")
    [ "$code" = 200 ] && break
    sleep 0.1
done
echo "health_status $code $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" "$work/health.json")"

for path in /health/live /health/ready /health; do
    out=$("${wrk_cpu[@]}" wrk -t2 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$health$path")
    rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
    p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    errors=$(grep -E "Non-2xx|Socket errors" <<<"$out" | tr -s ' ' | paste -sd ';' || true)
    echo "wrk $path requests_per_s=$rps p50=$p50 p99=$p99 ${errors:-no errors}"
done
