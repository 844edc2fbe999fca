#!/usr/bin/env bash
# Runs every test: formatting, lints, unit, property and end-to-end tests.
# Installs what the tests need when it is missing, so it works on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# Debian packages the tests use, as "command:package" pairs.
NEEDED=(
    "promtool:prometheus"   # promtool checks /metrics; the prometheus server scrapes it
    "chromium:chromium"     # the dashboard's browser tests (driven by Playwright)
    "redis-server:redis-server"   # conversation storage tests run a real Redis
    "debootstrap:debootstrap"     # the compose test builds its Debian base image
    "haproxy:haproxy"             # the fleet tests balance requests over daemons
)
missing=()
for pair in "${NEEDED[@]}"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

# The official MCP Python SDK drives the daemon; Playwright drives the system Chromium.
venv=tests/.venv
if ! "$venv/bin/python" -c 'import mcp, websockets, playwright' >/dev/null 2>&1; then
    log "creating $venv with the MCP Python SDK"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        sudo_cmd=""
        [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
        $sudo_cmd apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq python3-venv
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/py/requirements.txt
fi
# The newest SDK (2.x) drives Streamable HTTP from a venv of its own: 2.x has no
# WebSocket client, and 1.x stays for WebSocket and stdio.
venv2=tests/.venv-mcp2
if ! "$venv2/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("mcp") != open("tests/py/requirements-mcp2.txt").read().split("==")[1].strip())' >/dev/null 2>&1; then
    log "creating $venv2 with the MCP Python SDK 2.x"
    python3 -m venv "$venv2"
    "$venv2/bin/pip" install --quiet --disable-pip-version-check -r tests/py/requirements-mcp2.txt
fi

# The Kubernetes manifests are validated offline, from a venv of their own:
# kubernetes-validate carries the API schemas of every Kubernetes version it knows, so
# no cluster and no network are needed (tests/tests/kubernetes.rs; kubectl renders them).
venv_k8s=tests/.venv-k8s
if ! "$venv_k8s/bin/python" -c 'import importlib.metadata as m, sys; pins = [l.strip().split("==") for l in open("tests/py/requirements-k8s.txt") if "==" in l]; sys.exit(any(m.version(p) != v for p, v in pins))' >/dev/null 2>&1; then
    log "creating $venv_k8s with kubernetes-validate"
    python3 -m venv "$venv_k8s"
    "$venv_k8s/bin/pip" install --quiet --disable-pip-version-check -r tests/py/requirements-k8s.txt
fi
command -v kubectl >/dev/null 2>&1 \
    || echo "kubectl is missing: the Kubernetes manifests test (tests/tests/kubernetes.rs) will fail until it is installed" >&2

log "format"
cargo fmt --all --check

log "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "build (the end-to-end tests start these binaries)"
cargo build --workspace --bins --locked

log "tests"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
# Every test binary runs, even after one fails; the summary counts them all.
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$out" || status=$?

# Fuzzing: each target for EXAI_FUZZ_SECONDS (default 30; 0 skips), a crash fails the
# run. cargo-fuzz wants nightly flags; RUSTC_BOOTSTRAP=1 lets this stable toolchain take
# them.
fuzz_seconds=${EXAI_FUZZ_SECONDS:-30}
repo=$PWD
fuzz_failed=()
if [ "$fuzz_seconds" -gt 0 ]; then
    if ! command -v cargo-fuzz >/dev/null 2>&1; then
        log "installing cargo-fuzz"
        cargo install cargo-fuzz --locked
    fi
    for target in proto:stream_decoder daemon:mcp_input daemon:spool_records; do
        dir=${target%%:*}
        name=${target#*:}
        log "fuzz $dir/$name for $fuzz_seconds s"
        # A short run in the test command: without AddressSanitizer (the project's code
        # has no unsafe; what it finds here is a panic or a hang), with parallel codegen,
        # so that it builds in minutes on two cores. One target directory for all.
        if ! (cd "$dir" && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none --codegen-units 16 \
                --target-dir "$repo/target/fuzz" "$name" -- \
                -max_total_time="$fuzz_seconds" -print_final_stats=1 2>&1 | tail -n 25); then
            fuzz_failed+=("$dir/$name")
        fi
    done
fi

# One closing line for the whole run: cargo's own last line is a doc-test binary's. A
# binary that died without its result line (a crash, a signal) is counted too.
awk '/^ *(Running|Doc-tests) / { binaries++ }
     /^test result:/ { results++; for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\nSummary: %d passed, %d failed, in %d test binaries", p, f, binaries;
           if (binaries > results) printf "; %d of them ended without a result", binaries - results;
           printf "\n" }' "$out"
if [ ${#fuzz_failed[@]} -gt 0 ]; then
    printf 'Fuzzing failed (a crash, its input in <crate>/fuzz/artifacts/, or the target did not build): %s\n' "${fuzz_failed[*]}"
    status=1
fi
exit $status
