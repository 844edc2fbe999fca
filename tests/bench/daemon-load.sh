#!/usr/bin/env bash
# Drives a release exai-daemon with exai-load on loopback and prints the figures that
# BENCHMARKS.md records: calls/s and latency for `version` and `chat` (through a
# zero-latency fake-llm), p99 at half those rates, RSS idle and with 1,000 sessions, and
# the cost of observability (every event sampled vs none), all in one run.
# Usage: tests/bench/daemon-load.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
# shellcheck source=tests/bench/lib.sh
. tests/bench/lib.sh

"$bin/fake-llm" --port 0 2>"$work/llm.log" & pids+=($!)
llm=$(port_from "$work/llm.log" "listening on")
EXAI_EVENTS_SOCKET="$work/events.sock" METRICS_PORT=0 "$bin/exai-agent" 2>"$work/agent.log" & pids+=($!)
port_from "$work/agent.log" "addr=" >/dev/null

start_daemon() { # $1 = log name, then extra env assignments
    local log="$work/$1.log"; shift
    env EXAI_EVENTS_SOCKET="$work/events.sock" EXAI_WS_PORT=0 EXAI_WS_MAX_CONNECTIONS=4096 \
        GLM_API_KEY=bench GLM_API_URL="http://127.0.0.1:$llm/api/paas/v4" \
        EXAI_WS_GLOBAL_MAX_INFLIGHT=256 EXAI_WS_GLM_MAX_INFLIGHT=256 "$@" \
        "$bin/exai-daemon" 2>"$log" & pids+=($!)
    daemon_pid=$!
    daemon_port=$(port_from "$log" "addr=")
}
load() { "$bin/exai-load" --url "ws://127.0.0.1:$daemon_port/mcp" --duration "$secs" --warmup 2 "$@"; }
field() { python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['$2'], 2))" "$1"; }

start_daemon default
sleep 1
echo "idle_rss_mib $(rss_mib "$daemon_pid")"
# Memory with 1,000 open, initialized sessions, on a daemon that has served nothing else.
"$bin/exai-load" --url "ws://127.0.0.1:$daemon_port/mcp" --sessions 1000 --hold --duration 4 >/dev/null &
holder=$!
sleep 3.5
echo "rss_1000_sessions_mib $(rss_mib "$daemon_pid")"
wait "$holder"
# Throughput and latency on a fresh daemon, so the memory test does not colour them.
kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
start_daemon default2
v=$(load --sessions 32 --tool version); echo "version_max $v"
c=$(load --sessions 32 --tool chat); echo "chat_max $c"
half_v=$(python3 -c "print(int($(field "$v" calls_per_s) / 2))")
half_c=$(python3 -c "print(int($(field "$c" calls_per_s) / 2))")
echo "version_half $(load --sessions 32 --tool version --rate "$half_v")"
echo "chat_half $(load --sessions 32 --tool chat --rate "$half_c")"

# The cost of observability on the request path, same build, same run, alternating:
# no event sampled, the default policy, and every event sampled (3 events per call,
# decoded by the agent on the same 2 cores).
none=(EXAI_SAMPLE_WS_MESSAGES=0 EXAI_SAMPLE_REQUESTS=0 EXAI_SAMPLE_STORAGE_READS=0 EXAI_SAMPLE_STORAGE_WRITES=0 EXAI_SAMPLE_PROVIDER_CALLS=0 EXAI_SAMPLE_CONNECTIONS=0)
all=(EXAI_SAMPLE_WS_MESSAGES=1 EXAI_SAMPLE_REQUESTS=1)
kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
for round in 1 2; do
    for mode in none default all; do
        case $mode in
            none) start_daemon "$mode$round" "${none[@]}" ;;
            default) start_daemon "$mode$round" EXAI_LOG=info ;;
            all) start_daemon "$mode$round" "${all[@]}" ;;
        esac
        echo "sampled_${mode}_$round $(load --sessions 32 --tool version)"
        kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
    done
done
