#!/usr/bin/env bash
# Chat throughput of release exai-daemons with each conversation store and with Supabase
# persistence on or off, in one run. Three daemons run side by side, idle but for the one
# under load; short runs alternate between them (the order rotating every round), so that
# each ratio compares runs seconds apart on this noisy machine. Every call continues its
# session's conversation (exai-load --continue), so each chat reads and writes its thread.
#   memory    in-memory store, Supabase off (the default daemon)
#   supabase  in-memory store, Supabase on: every turn spooled to disk and uploaded to
#             fake-postgrest by the background uploader
#   redis     a local redis-server as the store, Supabase off
# Each round also runs each mode paced at RATE calls/s, the same for all, to compare the
# daemon's CPU per call. fake-postgrest and redis-server share the 2 cores; their CPU is
# not the daemon's and is reported apart.
# Usage: tests/bench/storage-load.sh [seconds per run, default 4] [rounds, default 8] [RATE, default 1500]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-4}
rounds=${2:-8}
rate=${3:-1500}
# shellcheck source=tests/bench/lib.sh
. tests/bench/lib.sh
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }  # CPU time used, in 1/100 s

"$bin/fake-llm" --port 0 2>"$work/llm.log" & pids+=($!)
llm=$(port_from "$work/llm.log" "listening on")
key=bench-service-role-key
FAKE_POSTGREST_KEY=$key "$bin/fake-postgrest" --port 0 2>"$work/pg.log" & pids+=($!)
pg_pid=$!
pg=$(port_from "$work/pg.log" "listening on")
redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
    --logfile "$work/redis.log" & pids+=($!)
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
EXAI_EVENTS_SOCKET="$work/events.sock" METRICS_PORT=0 HEALTH_CHECK_PORT=0 MONITORING_PORT=0 \
    "$bin/exai-agent" 2>"$work/agent.log" & pids+=($!)
port_from "$work/agent.log" "metrics listening" >/dev/null

declare -A port pid
start_daemon() { # $1 = mode, then extra env assignments
    local mode=$1; shift
    env EXAI_EVENTS_SOCKET="$work/events.sock" EXAI_WS_PORT=0 \
        GLM_API_KEY=bench GLM_API_URL="http://127.0.0.1:$llm/api/paas/v4" \
        EXAI_WS_GLOBAL_MAX_INFLIGHT=256 EXAI_WS_GLM_MAX_INFLIGHT=256 "$@" \
        "$bin/exai-daemon" 2>"$work/$mode.log" & pids+=($!)
    pid[$mode]=$!
    port[$mode]=$(port_from "$work/$mode.log" "addr=")
}
start_daemon memory
start_daemon supabase SUPABASE_URL="http://127.0.0.1:$pg" SUPABASE_SERVICE_ROLE_KEY=$key EXAI_SPOOL_DIR="$work/spool"
start_daemon redis REDIS_URL="redis://127.0.0.1:$redis_port"
load() { "$bin/exai-load" --url "ws://127.0.0.1:${port[$1]}/mcp" --sessions 32 --tool chat --continue --duration "$secs" --warmup 1 "${@:2}"; }

modes=(memory supabase redis)
for round in $(seq "$rounds"); do
    for i in 0 1 2; do
        mode=${modes[$(( (i + round) % 3 ))]}
        d0=$(ticks "${pid[$mode]}"); p0=$(ticks "$pg_pid"); r0=$(ticks "$redis_pid")
        out=$(load "$mode" --rate "$rate")
        calls=$(( rate * (secs + 1) ))  # warm-up and measured calls alike
        echo "paced_${mode}_$round $out"
        echo "cpu_${mode}_$round daemon_us_per_call=$(( ($(ticks "${pid[$mode]}") - d0) * 10000 / calls )) fake_postgrest_us_per_call=$(( ($(ticks "$pg_pid") - p0) * 10000 / calls )) redis_us_per_call=$(( ($(ticks "$redis_pid") - r0) * 10000 / calls ))"
        echo "chat_${mode}_$round $(load "$mode")"
    done
done | tee "$work/results"
# Everything the supabase daemon answered should be upstream: its spool drained.
sleep 2
echo "fake-postgrest after the run: $(curl -s "http://127.0.0.1:$pg/_stats")" | cut -c1-300

python3 - "$work/results" "$rate" <<'PY'
import json, statistics, sys
runs, paced, cpu = {}, {}, {}
for line in open(sys.argv[1]):
    name, _, rest = line.strip().partition(" ")
    kind, mode, rnd = (name.split("_") + ["", "", ""])[:3]
    if kind == "chat":
        runs.setdefault(rnd, {})[mode] = json.loads(rest)
    elif kind == "paced":
        paced.setdefault(rnd, {})[mode] = json.loads(rest)
    elif kind == "cpu":
        cpu.setdefault(rnd, {})[mode] = {k: int(v) for k, v in (kv.split("=") for kv in rest.split())}
ratios = {"supabase": [], "redis": []}
per_call = {"memory": [], "supabase": [], "redis": [], "fake_postgrest": [], "redis_server": []}
for rnd in sorted(runs, key=int):
    r, c = runs[rnd], cpu[rnd]
    m = r["memory"]["calls_per_s"]
    for mode in ratios:
        ratios[mode].append(r[mode]["calls_per_s"] / m)
    for mode in ("memory", "supabase", "redis"):
        per_call[mode].append(c[mode]["daemon_us_per_call"])
    per_call["fake_postgrest"].append(c["supabase"]["fake_postgrest_us_per_call"])
    per_call["redis_server"].append(c["redis"]["redis_us_per_call"])
    print(f"round {rnd}: memory {m:,.0f}/s, supabase {r['supabase']['calls_per_s']:,.0f}/s "
          f"({r['supabase']['calls_per_s'] / m:.3f}), redis {r['redis']['calls_per_s']:,.0f}/s ({r['redis']['calls_per_s'] / m:.3f}); "
          f"paced p99 {paced[rnd]['memory']['p99_ms']} / {paced[rnd]['supabase']['p99_ms']} / {paced[rnd]['redis']['p99_ms']} ms")
for mode, values in ratios.items():
    print(f"{mode}/memory calls/s: median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})")
print(f"CPU per call paced at {sys.argv[2]}/s (median us): daemon memory {statistics.median(per_call['memory']):.0f}, "
      f"daemon supabase {statistics.median(per_call['supabase']):.0f} (+ fake-postgrest {statistics.median(per_call['fake_postgrest']):.0f}), "
      f"daemon redis {statistics.median(per_call['redis']):.0f} (+ redis-server {statistics.median(per_call['redis_server']):.0f})")
PY
