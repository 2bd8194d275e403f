#!/usr/bin/env bash
# Benchmark aar's S3 mode, and Debian's docker-registry in S3 mode beside it, on this
# machine, over TLS 1.3 on 127.0.0.1 with client certificates. See bench/s3/README.md.
#
#   bench/s3/run.sh [--aar PATH] [--size BYTES] [--peer-size BYTES] [--duration S]
#                   [--quiet-wait S] [--only both|aar|peer] [--helpers DIR]
#                   [--output FILE] [--keep-workdir]
#
# Needs root the first time (apt: docker-registry wrk curl openssl gcc python3-venv) and
# crates.io / PyPI once: the S3 test server (s3s-fs 0.14.1) is built with `cargo install`
# into target/bench-tools, and moto (for docker-registry, whose S3 driver needs
# ListMultipartUploads, which s3s-fs lacks) is installed with pip into a venv there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
tools="$repo/target/bench-tools"

keep=0
args=()
for a in "$@"; do
    case "$a" in
        --keep-workdir) keep=1 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) args+=("$a") ;;
    esac
done
command_line="bench/s3/run.sh${*:+ $*}"

# ---- tools (idempotent) ------------------------------------------------------
missing=()
for pkg in docker-registry wrk curl openssl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
    echo "[bench-s3] installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >&2
fi
mkdir -p "$tools"
if [[ ! -x "$tools/bin/s3s-fs" ]]; then
    echo "[bench-s3] building the S3 test server (s3s-fs 0.14.1) into $tools" >&2
    cargo install --quiet --locked --root "$tools" s3s-fs --version 0.14.1 --features binary >&2
fi
moto="$(command -v moto_server || true)"
if [[ -z "$moto" ]]; then
    if [[ ! -x "$tools/moto/bin/moto_server" ]]; then
        echo "[bench-s3] installing moto[s3] into $tools/moto" >&2
        python3 -m venv "$tools/moto"
        "$tools/moto/bin/pip" install --quiet 'moto[s3,server]' boto3 >&2
    fi
    moto="$tools/moto/bin/moto_server"
fi
# boto3 creates the peer's bucket; it comes with moto.
moto_python="$(dirname "$(readlink -f "$moto")")/python3"
[[ -x "$moto_python" ]] || moto_python="$(command -v python3)"

# ---- work directory and cleanup ------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/var/tmp}/aar-bench-s3.XXXXXX")"
py_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [[ -n "$py_pid" ]] && kill -0 "$py_pid" 2>/dev/null; then
        kill -TERM "$py_pid" 2>/dev/null || true
        wait "$py_pid" 2>/dev/null || true
    fi
    # Backstop: any process still running with our work directory on its command line.
    for p in /proc/[0-9]*; do
        pid="${p#/proc/}"
        if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF "$work/"; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    if ((keep)); then
        echo "[bench-s3] work directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

python3 "$here/bench_s3.py" --workdir "$work" --command "$command_line" \
    --s3s-fs "$tools/bin/s3s-fs" --moto "$moto" --moto-python "$moto_python" \
    --repo "$repo" "${args[@]}" &
py_pid=$!
wait "$py_pid"
