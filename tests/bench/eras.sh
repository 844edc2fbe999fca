#!/usr/bin/env bash
# What a stateless MCP 2026-07-28 call costs against a 2025 call inside a session, for
# BENCHMARKS.md: one release daemon with its agent attached, Streamable HTTP, `version`
# and `chat` (through a zero-latency fake-llm), 32 clients each one call in flight:
#   session    2025-11-25: initialize once, then every call in the session
#   stateless  2026-07-28: no initialize, no session; every call carries its revision and
#              capabilities in _meta and its method and tool in headers
# plus, for `version`, the official Python SDK 2.x's MCPServer serving the same tool to
# the same 2026 requests (tests/py/peer_mcp2.py; needs tests/.venv-mcp2, which
# tests/run.sh makes). The order rotates every round; the table gives medians over
# rounds and the stateless / session ratios per round, then their median.
#
# BASELINE=DIR adds the session rows of another build's daemon (a worktree of the
# previous commit, built --release), attached too: the 2025 path must not regress.
#
# Usage: tests/bench/eras.sh [SECONDS per run, default 10] [ROUNDS, default 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
rounds=${2:-3}
sessions=${SESSIONS:-32}
# shellcheck source=tests/bench/lib.sh
. tests/bench/lib.sh

"$bin/fake-llm" --port 0 2>"$work/llm.log" & pids+=($!)
llm=$(port_from "$work/llm.log" "listening on")
declare -A pid port
start() { # $1 = name; $from: the binaries' directory
    env EXAI_EVENTS_SOCKET="$work/$1.sock" METRICS_PORT=0 HEALTH_CHECK_PORT=0 MONITORING_PORT=0 \
        "${from:-$bin}/exai-agent" 2>"$work/agent-$1.log" & pids+=($!)
    port_from "$work/agent-$1.log" "metrics listening" >/dev/null
    env EXAI_EVENTS_SOCKET="$work/$1.sock" EXAI_WS_PORT=0 EXAI_DAEMON_NAME="$1" \
        GLM_API_KEY=bench GLM_API_URL="http://127.0.0.1:$llm/api/paas/v4" \
        EXAI_WS_GLOBAL_MAX_INFLIGHT=256 EXAI_WS_GLM_MAX_INFLIGHT=256 \
        "${from:-$bin}/exai-daemon" 2>"$work/daemon-$1.log" & pids+=($!)
    pid[$1]=$!
    port[$1]=$(port_from "$work/daemon-$1.log" "addr=")
    for _ in $(seq 200); do grep -q "connected to agent" "$work/daemon-$1.log" && break; sleep 0.05; done
}
start exai
configs=(session stateless)
if [ -n "${BASELINE:-}" ]; then
    from=$BASELINE start baseline
    configs+=(baseline)
fi
tests/.venv-mcp2/bin/python tests/py/peer_mcp2.py 0 2>"$work/peer.log" & pids+=($!)
pid[peer]=$!
port[peer]=$(port_from "$work/peer.log" "listening on")

results="$work/results.jsonl"
: >"$results"
for round in $(seq "$rounds"); do
    shift_by=$(( (round - 1) % ${#configs[@]} ))
    order=("${configs[@]:$shift_by}" "${configs[@]:0:$shift_by}" peer)
    for tool in version chat; do
        for config in "${order[@]}"; do
            target=exai; flags=()
            case $config in
                stateless) flags=(--stateless) ;;
                baseline) target=baseline ;;
                peer) [ "$tool" = chat ] && continue; target=peer; flags=(--stateless) ;;
            esac
            out=$("$bin/exai-load" --url "http://127.0.0.1:${port[$target]}/mcp" "${flags[@]}" \
                --sessions "$sessions" --tool "$tool" --duration "$secs" --warmup 2 --cpu-pid "${pid[$target]}")
            echo "$out" | python3 -c "import json,sys; r=json.load(sys.stdin); r.update(round=$round, config='$config'); print(json.dumps(r))" >>"$results"
            echo "round $round $tool $config: $out" >&2
        done
    done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault((r["tool"], r["config"]), []).append(r)
med = lambda k, f: statistics.median(r[f] for r in by[k])
def ratio(tool, config, field, against="session"):
    base = {r["round"]: r for r in by[(tool, against)]}
    return statistics.median(r[field] / base[r["round"]][field] for r in by[(tool, config)])
names = {"session": "2025-11-25, in a session", "stateless": "2026-07-28, stateless",
         "baseline": "2025-11-25, in a session (baseline build)",
         "peer": "2026-07-28, Python SDK 2.x MCPServer"}
print("| tool | request | calls/s | p50 ms | p99 ms | daemon CPU µs/call | CPU/call vs session | calls/s vs session | errors |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for tool in ("version", "chat"):
    for config in ("session", "stateless", "baseline", "peer"):
        k = (tool, config)
        if k not in by:
            continue
        rc = "—" if config == "session" else f'{ratio(tool, config, "cpu_us_per_call"):.2f}'
        rr = "—" if config == "session" else f'{ratio(tool, config, "calls_per_s"):.2f}'
        print(f'| {tool} | {names[config]} | {med(k, "calls_per_s"):,.0f} | {med(k, "p50_ms"):.2f} | {med(k, "p99_ms"):.2f} | '
              f'{med(k, "cpu_us_per_call"):.1f} | {rc} | {rr} | {sum(r["errors"] for r in by[k])} |')
print(f"\n{len(rows)} runs; medians over rounds; ratios per round against the session rows, then the median.")
PY
