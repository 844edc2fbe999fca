#!/usr/bin/env bash
# What observability costs the daemon, for the first table of BENCHMARKS.md.
#
# Three release daemons, each in one configuration for the whole run:
#   disabled  EXAI_SAMPLE_*=0 and no agent listening: no event is built or sent
#   attached  the default sampling policy, an agent connected
#   killed    the default policy, its agent SIGKILLed after it connected: the daemon keeps
#             recording into a pipe nobody reads (its writer drops and reconnects)
# and the same load on each in turn — `version`, and `chat` through a zero-latency
# fake-llm, over WebSocket and over Streamable HTTP, 32 sessions each as fast as they go —
# alternating the order every round so drift and noise fall on every configuration alike.
# Each run reports calls/s, p50/p99 and the daemon's CPU time per call (exai-load
# --cpu-pid); the table gives the medians over rounds and each configuration's ratio to
# "disabled" in the same round.
#
# PEER=1 adds the official Python SDK's FastMCP server with the same `version` tool
# (tests/py/peer_fastmcp.py), under the same load, over both transports.
#
# BASELINE=DIR adds a fourth daemon and agent from another build's release binaries (a
# worktree of the previous commit: `git worktree add ../prev HEAD~1 && (cd ../prev && cargo
# build --release --bins)`, then BASELINE=../prev/target/release), attached like
# "attached", so that a change is measured against what came before in the same run.
#
# Usage: tests/bench/overhead.sh [SECONDS per run, default 10] [ROUNDS, default 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
rounds=${2:-3}
sessions=${SESSIONS:-32}
# shellcheck source=tests/bench/lib.sh
. tests/bench/lib.sh

"$bin/fake-llm" --port 0 2>"$work/llm.log" & pids+=($!)
llm=$(port_from "$work/llm.log" "listening on")

start_agent() { # $1 = name; sets agent_pid. $from: the binaries' directory
    env EXAI_EVENTS_SOCKET="$work/$1.sock" METRICS_PORT=0 HEALTH_CHECK_PORT=0 MONITORING_PORT=0 \
        "${from:-$bin}/exai-agent" 2>"$work/agent-$1.log" & pids+=($!)
    agent_pid=$!
    port_from "$work/agent-$1.log" "metrics listening" >/dev/null
}
start_daemon() { # $1 = name, then extra env assignments; sets daemon_pid, daemon_port
    local name=$1; shift
    env EXAI_EVENTS_SOCKET="$work/$name.sock" EXAI_WS_PORT=0 EXAI_DAEMON_NAME="$name" \
        GLM_API_KEY=bench GLM_API_URL="http://127.0.0.1:$llm/api/paas/v4" \
        EXAI_WS_GLOBAL_MAX_INFLIGHT=256 EXAI_WS_GLM_MAX_INFLIGHT=256 "$@" \
        "${from:-$bin}/exai-daemon" 2>"$work/daemon-$name.log" & pids+=($!)
    daemon_pid=$!
    daemon_port=$(port_from "$work/daemon-$name.log" "addr=")
}

no_events=()
for var in WS_MESSAGES REQUESTS STORAGE_READS STORAGE_WRITES SUPABASE PROVIDER_CALLS CONNECTIONS; do
    no_events+=("EXAI_SAMPLE_$var=0")
done
start_daemon disabled "${no_events[@]}"
declare -A pid port
pid[disabled]=$daemon_pid; port[disabled]=$daemon_port
start_agent attached
start_daemon attached
pid[attached]=$daemon_pid; port[attached]=$daemon_port
start_agent killed
killed_agent=$agent_pid
start_daemon killed
pid[killed]=$daemon_pid; port[killed]=$daemon_port
for name in attached killed; do
    for _ in $(seq 200); do grep -q "connected to agent" "$work/daemon-$name.log" && break; sleep 0.05; done
done
kill -9 "$killed_agent"

configs=(disabled attached killed)
if [ -n "${BASELINE:-}" ]; then
    from=$BASELINE start_agent baseline
    from=$BASELINE start_daemon baseline
    pid[baseline]=$daemon_pid; port[baseline]=$daemon_port
    for _ in $(seq 200); do grep -q "connected to agent" "$work/daemon-baseline.log" && break; sleep 0.05; done
    configs+=(baseline)
fi
if [ "${PEER:-0}" = 1 ]; then
    # The 1.x SDK: its FastMCP serves both transports (2.x dropped WebSocket).
    tests/.venv/bin/python tests/py/peer_fastmcp.py 0 2>"$work/peer.log" & pids+=($!)
    pid[peer]=$!
    port[peer]=$(port_from "$work/peer.log" "listening on")
fi

results="$work/results.jsonl"
: >"$results"
for round in $(seq "$rounds"); do
    # Rotate the order each round.
    shift_by=$(( (round - 1) % ${#configs[@]} ))
    order=("${configs[@]:$shift_by}" "${configs[@]:0:$shift_by}")
    [ "${PEER:-0}" = 1 ] && order+=(peer)
    for transport in websocket http; do
        for tool in version chat; do
            for config in "${order[@]}"; do
                [ "$config" = peer ] && [ "$tool" = chat ] && continue
                case $transport in
                    websocket) url="ws://127.0.0.1:${port[$config]}/mcp" ;;
                    http) url="http://127.0.0.1:${port[$config]}/mcp" ;;
                esac
                out=$("$bin/exai-load" --url "$url" --sessions "$sessions" --tool "$tool" \
                    --duration "$secs" --warmup 2 --cpu-pid "${pid[$config]}")
                echo "$out" | python3 -c "import json,sys; r=json.load(sys.stdin); r.update(round=$round, config='$config'); print(json.dumps(r))" >>"$results"
                echo "round $round $transport $tool $config: $out" >&2
            done
        done
    done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def key(r): return (r["transport"], r["tool"], r["config"])
by = {}
for r in rows:
    by.setdefault(key(r), []).append(r)
def med(k, f):
    return statistics.median(r[f] for r in by[k])
def ratio(transport, tool, config, field):
    # Per round against "disabled" in the same round, then the median of those ratios.
    base = {r["round"]: r for r in by[(transport, tool, "disabled")]}
    return statistics.median(r[field] / base[r["round"]][field] for r in by[(transport, tool, config)] if base[r["round"]][field])
print("| transport | tool | configuration | calls/s | p50 ms | p99 ms | daemon CPU µs/call | calls/s vs disabled | p99 vs disabled | errors |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for transport in ("websocket", "http"):
    for tool in ("version", "chat"):
        for config in ("disabled", "attached", "killed", "baseline", "peer"):
            k = (transport, tool, config)
            if k not in by:
                continue
            rel = "—" if config in ("disabled", "peer") else f'{ratio(transport, tool, config, "calls_per_s"):.3f}'
            relp = "—" if config in ("disabled", "peer") else f'{ratio(transport, tool, config, "p99_ms"):.3f}'
            name = {"peer": "FastMCP (Python SDK)", "baseline": "baseline build, attached"}.get(config, config)
            print(f'| {transport} | {tool} | {name} | {med(k, "calls_per_s"):,.0f} | {med(k, "p50_ms"):.2f} | {med(k, "p99_ms"):.2f} | '
                  f'{med(k, "cpu_us_per_call"):.1f} | {rel} | {relp} | {sum(r["errors"] for r in by[k])} |')
for tool in ("version", "chat"):
    try:
        http = med(("http", tool, "attached"), "cpu_us_per_call")
        ws = med(("websocket", tool, "attached"), "cpu_us_per_call")
        print(f"\n{tool}: daemon CPU per call, HTTP / WebSocket = {http / ws:.2f}")
    except KeyError:
        pass
if ("http", "version", "baseline") in by:
    for transport in ("websocket", "http"):
        for tool in ("version", "chat"):
            base = {r["round"]: r for r in by[(transport, tool, "baseline")]}
            cpu = statistics.median(r["cpu_us_per_call"] / base[r["round"]]["cpu_us_per_call"] for r in by[(transport, tool, "attached")])
            rate = statistics.median(r["calls_per_s"] / base[r["round"]]["calls_per_s"] for r in by[(transport, tool, "attached")])
            print(f"\n{transport} {tool}: this build / baseline build, attached: CPU per call {cpu:.2f}, calls/s {rate:.2f}")
print(f"\n{len(rows)} runs; medians over rounds; ratios are per round against 'disabled', then the median.")
PY
