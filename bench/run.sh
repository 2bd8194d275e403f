#!/usr/bin/env bash
# Benchmark aar against Debian's docker-registry (CNCF distribution 2.8) on this
# machine, over TLS 1.3 on 127.0.0.1 with client certificates. See bench/README.md.
#
#   bench/run.sh [--reps N] [--aar PATH] [--only both|aar|peer] [--size BYTES]
#                [--duration S] [--keep-workdir] [--output FILE]
#
# Needs root (or the packages already installed): docker-registry wrk curl openssl,
# and a C compiler for the small wrk client-certificate shim.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"

keep=0
args=()
for a in "$@"; do
    case "$a" in
        --keep-workdir) keep=1 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) args+=("$a") ;;
    esac
done
command_line="bench/run.sh${*:+ $*}"

# ---- tools (idempotent) ------------------------------------------------------
missing=()
for pkg in docker-registry wrk curl openssl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if ((${#missing[@]})); then
    echo "[bench] installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >&2
fi

# ---- work directory and cleanup ------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/var/tmp}/aar-bench.XXXXXX")"
py_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [[ -n "$py_pid" ]] && kill -0 "$py_pid" 2>/dev/null; then
        kill -TERM "$py_pid" 2>/dev/null || true
        wait "$py_pid" 2>/dev/null || true
    fi
    # Backstop: any server still alive whose binary ran from our work directory
    # configuration (the Python side normally stops everything itself).
    for p in /proc/[0-9]*; do
        pid="${p#/proc/}"
        if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF "$work/"; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    if ((keep)); then
        echo "[bench] work directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

python3 "$here/bench.py" --workdir "$work" --command "$command_line" "${args[@]}" &
py_pid=$!
wait "$py_pid"
