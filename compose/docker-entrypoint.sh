#!/bin/sh
# Entrypoint of the exai image. It ends by exec'ing its arguments (exai-daemon unless told
# otherwise), so the program is PID 1 and `docker stop`'s SIGTERM reaches it directly.
#
# Before that, a serving exai-daemon with no EXAI_SPOOL_DIR of its own gets a spool under
# /var/lib/exai/spool (the spool volume): the first slot daemon-N whose lock no running
# daemon holds, and its conversation journal beside it (journal-N). The lock is taken on file descriptor 9, which the daemon inherits and keeps
# until it exits. So `--scale daemon=2` gives two daemons two spools instead of one spool
# written by both, and a recreated daemon takes back the slot of the one it replaced,
# with whatever that one had not uploaded yet.
set -eu

spool_root=/var/lib/exai/spool
max_slots=64

claims_spool() {
    [ "${1:-}" = exai-daemon ] || return 1
    [ -z "${EXAI_SPOOL_DIR:-}" ] && [ -d "$spool_root" ] || return 1
    case "${2:-}" in
        bridge | healthcheck | help | -h | --help | -V | --version) return 1 ;;
    esac
}

if claims_spool "$@"; then
    slot=0
    while :; do
        exec 9>>"$spool_root/daemon-$slot.lock"
        if flock --nonblock 9; then
            break
        fi
        slot=$((slot + 1))
        if [ "$slot" -ge "$max_slots" ]; then
            echo "exai-entrypoint: all $max_slots spool slots in $spool_root are held by running daemons" >&2
            exit 1
        fi
    done
    export EXAI_SPOOL_DIR="$spool_root/daemon-$slot"
    # The conversation journal (turns answered while Redis was away) beside it, on the
    # same volume and under the same lock: a recreated daemon replays what its
    # predecessor kept, instead of losing it with the container's own layer.
    : "${EXAI_STORAGE_JOURNAL_DIR:=$spool_root/journal-$slot}"
    export EXAI_STORAGE_JOURNAL_DIR
    echo "exai-entrypoint: spool $EXAI_SPOOL_DIR, journal $EXAI_STORAGE_JOURNAL_DIR" >&2
fi
exec "$@"
