#!/usr/bin/env bash
# Starts exai-agent and exai-daemon side by side on loopback with embedded defaults:
# no Redis, no keys, no configuration needed. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bins --locked
agent=""
daemon=""
stop() {
    trap - EXIT INT TERM
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null || true
    [ -n "$agent" ] && kill "$agent" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop EXIT INT TERM

target/release/exai-agent &
agent=$!
target/release/exai-daemon &
daemon=$!
echo "exai-agent (pid $agent) and exai-daemon (pid $daemon) running; metrics on http://127.0.0.1:${METRICS_PORT:-8000}/metrics; Ctrl-C stops both" >&2
# Stop both as soon as either exits.
wait -n
