# Shared by the bench scripts, sourced from the repository root after `set -euo pipefail`:
# builds the release binaries, makes a scratch directory ($work) and, at exit, stops every
# process whose pid was added to $pids and removes the directory.
cargo build --release --bins --locked >&2
bin=target/release
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port_from() { # wait for a "…127.0.0.1:PORT" line matching $2 in $1 and print PORT
    for _ in $(seq 200); do
        if grep -qE "$2" "$1" 2>/dev/null; then grep -oE "$2.*127\.0\.0\.1:[0-9]+" "$1" | head -1 | sed 's/.*://'; return; fi
        sleep 0.05
    done
    echo "no port in $1" >&2; exit 1
}
rss_mib() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
