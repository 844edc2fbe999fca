#!/usr/bin/env bash
# Starts exai-agent and exai-daemon side by side on loopback with embedded defaults:
# no Redis, no configuration needed. Without KIMI_API_KEY / GLM_API_KEY it also starts
# fake-llm (an OpenAI-compatible stand-in) and points both providers at it, so chat works
# end to end without keys. Ctrl-C stops everything:
# the daemon first, then the agent.
set -euo pipefail
cd "$(dirname "$0")/.."

# EXAI_BIN_DIR runs binaries built elsewhere (the tests use their own build).
if [ -n "${EXAI_BIN_DIR:-}" ]; then
    bin=$EXAI_BIN_DIR
else
    cargo build --release --bins --locked
    bin=target/release
fi
# No balancer watches a local run: SIGTERM stops the daemon without a drain.
export EXAI_DRAIN_S=${EXAI_DRAIN_S:-0}
# Each program in a process group of its own (job control), so that Ctrl-C reaches only
# this script, which stops them in order: the daemon first, while the agent is still
# there to receive its last heartbeat, then the agent, then fake-llm.
set -m
daemon="" agent="" fake=""
stop() {
    trap - EXIT INT TERM
    for pid in "$daemon" "$agent" "$fake"; do
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap stop EXIT INT TERM

if [ -z "${KIMI_API_KEY:-}${MOONSHOT_API_KEY:-}${GLM_API_KEY:-}${ZHIPUAI_API_KEY:-}" ]; then
    fake_port=${FAKE_LLM_PORT:-8090}
    "$bin/fake-llm" --port "$fake_port" &
    fake=$!
    export GLM_API_KEY=local-fake-llm GLM_API_URL="http://127.0.0.1:$fake_port/api/paas/v4"
    export KIMI_API_KEY=local-fake-llm KIMI_API_URL="http://127.0.0.1:$fake_port/v1"
    echo "no provider keys set: chat answers come from fake-llm on 127.0.0.1:$fake_port (it echoes the prompt)" >&2
fi

"$bin/exai-agent" &
agent=$!
"$bin/exai-daemon" &
daemon=$!
cat >&2 <<INFO
running: MCP on ws://127.0.0.1:${EXAI_WS_PORT:-8079}/mcp and http://127.0.0.1:${EXAI_WS_PORT:-8079}/mcp,
dashboard on http://127.0.0.1:${MONITORING_PORT:-8080}/, health on http://127.0.0.1:${HEALTH_CHECK_PORT:-8081}/health,
metrics on http://127.0.0.1:${METRICS_PORT:-8000}/metrics; Ctrl-C stops everything
INFO
# Stop everything as soon as one of them exits.
wait -n
