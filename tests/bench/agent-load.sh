#!/usr/bin/env bash
# The agent's memory and scrape cost under load, for BENCHMARKS.md ("The agent").
#
#  1. 10,000 series: a fresh release exai-agent with room for 512 daemon labels, and
#     exai-pipe-load as $SERIES_DAEMONS daemons (default 8: every series carries its daemon, ~1,250 each) sending the full event mix for
#     $SERIES_SECONDS (default 60 s; past 300 s the dashboard's history is full). Prints the
#     series count (sample lines of /metrics), the agent's RSS and the time of a /metrics
#     scrape, 15 s before the end; once with the dashboard on (as shipped), once with it off.
#  2. Sustained load: a fresh agent (default settings), exai-pipe-load as $DAEMONS daemons
#     (default 4) at RATE events/s for SECONDS, /metrics scraped every 15 s as Prometheus
#     would; one row every 15 s: RSS, series, scrape time and the agent's CPU.
#
# Usage: tests/bench/agent-load.sh [SECONDS, default 600] [RATE, default 100000]
# Set SKIP_SERIES=1 or SKIP_SUSTAINED=1 to run one part only, SERIES_DASHBOARD=on (or off)
# to run part 1 with the dashboard on (off) only; AGENT_ENV="NAME=value ..." adds settings
# to every agent started (an allocator knob, say); DASHBOARD=off turns the
# dashboard off in part 2 (it is on, on a free port, as in a default deployment).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-600}
rate=${2:-100000}
series_daemons=${SERIES_DAEMONS:-8}
series_secs=${SERIES_SECONDS:-60}
daemons=${DAEMONS:-4}
every=15
# shellcheck source=tests/bench/lib.sh
. tests/bench/lib.sh
start_agent() { # $1 = log name, then extra env assignments; sets agent_pid, metrics_port
    local log="$work/$1.log"; shift
    rm -f "$work/events.sock"
    # shellcheck disable=SC2086 # AGENT_ENV is a list of assignments
    env EXAI_EVENTS_SOCKET="$work/events.sock" METRICS_PORT=0 HEALTH_CHECK_PORT=0 \
        MONITORING_PORT=0 ${AGENT_ENV:-} "$@" "$bin/exai-agent" 2>"$log" & pids+=($!)
    agent_pid=$!
    metrics_port=$(port_from "$log" "metrics listening")
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# One scrape: prints "<sample lines> <seconds>".
scrape() {
    local t
    t=$(curl -s -o "$work/metrics.txt" -w '%{time_total}' "http://127.0.0.1:$metrics_port/metrics")
    echo "$(grep -vc '^#' "$work/metrics.txt") $t"
}
load() { "$bin/exai-pipe-load" --socket "$work/events.sock" --report-every 60 "$@"; }

series() { # $1 = dashboard on|off
    local dashboard=()
    [ "$1" = off ] && dashboard=(MONITORING_ENABLED=false)
    start_agent "series-$1" EXAI_METRICS_MAX_DAEMONS=512 "${dashboard[@]}"
    sleep 1
    echo "dashboard $1"
    echo "idle_rss_mib $(rss_mib "$agent_pid")"
    local loader n t
    load --daemons "$series_daemons" --rate 20000 --duration "$series_secs" >"$work/series-load.json" &
    loader=$!
    sleep $((series_secs > 15 ? series_secs - 15 : 1))
    read -r n t < <(scrape)
    for _ in 1 2 3 4; do read -r n t < <(scrape); echo "series_scrape n=$n seconds=$t"; sleep 1; done
    echo "series $n rss_mib $(rss_mib "$agent_pid") (daemons=$series_daemons, while they send 20,000 events/s)"
    wait "$loader"
    echo "series_load $(cat "$work/series-load.json")"
    sleep 2
    read -r n t < <(scrape)
    echo "series $n rss_mib $(rss_mib "$agent_pid") (daemons disconnected: their gauges are gone, their counters stay until the TTL)"
    kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true
}
if [ -z "${SKIP_SERIES:-}" ]; then
    for dashboard in ${SERIES_DASHBOARD:-on off}; do series "$dashboard"; done
fi

if [ -z "${SKIP_SUSTAINED:-}" ]; then
    dashboard=()
    [ "${DASHBOARD:-on}" = off ] && dashboard=(MONITORING_ENABLED=false)
    start_agent sustained "${dashboard[@]}"
    echo "dashboard ${DASHBOARD:-on}"
    sleep 1
    load --daemons "$daemons" --rate "$rate" --duration "$secs" >"$work/load.json" &
    loader=$!
    hz=$(getconf CLK_TCK)
    printf '%8s %9s %8s %10s %10s\n' t_s rss_mib series scrape_ms agent_cpu%
    start=$(date +%s.%N); ticks=$(cpu_ticks "$agent_pid"); last=$start
    while kill -0 "$loader" 2>/dev/null; do
        sleep "$every"
        kill -0 "$loader" 2>/dev/null || break
        read -r n t < <(scrape)
        now=$(date +%s.%N); now_ticks=$(cpu_ticks "$agent_pid")
        cpu=$(python3 -c "print(round(100 * ($now_ticks - $ticks) / $hz / ($now - $last), 1))")
        ticks=$now_ticks; last=$now
        printf '%8.0f %9s %8s %10.2f %10s\n' "$(python3 -c "print($now - $start)")" \
            "$(rss_mib "$agent_pid")" "$n" "$(python3 -c "print($t * 1000)")" "$cpu"
    done
    wait "$loader"
    echo "sustained_load $(cat "$work/load.json")"
    echo "sustained_end_rss_mib $(rss_mib "$agent_pid")"
    grep -E "^exai_pipe_(events_lost|daemon_dropped_events)_total" "$work/metrics.txt" | grep -v ' 0$' || echo "no events lost or dropped at the last scrape"
fi
