# Sourced by bench/run.sh and bench/s3/run.sh (after `set -euo pipefail`): the options
# both take, the packages both need, a work directory that goes away with every process
# started from it, and the Python driver run in the background so a signal reaches the
# cleanup. The caller sets `tag`, the prefix of its messages ([bench], [bench-s3]).

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# bench_args HELP_END "$@": sets `keep` (--keep-workdir) and `args` (everything else);
# -h prints the calling script's header comment, lines 2 to HELP_END.
bench_args() {
    local help_end="$1" a
    shift
    keep=0
    args=()
    for a in "$@"; do
        case "$a" in
            --keep-workdir) keep=1 ;;
            -h|--help) sed -n "2,${help_end}p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) args+=("$a") ;;
        esac
    done
}

# bench_packages [PACKAGE...]: installs with apt what is missing of the tools both
# benchmarks use, plus the packages named.
bench_packages() {
    local missing=() pkg
    for pkg in docker-registry wrk curl openssl nginx; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    missing+=("$@")
    if ((${#missing[@]})); then
        echo "$tag installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >&2
    fi
}

# bench_workdir NAME: makes `work` under $TMPDIR (or /var/tmp) and arranges that on exit
# the driver is stopped, then anything still running with `work` on its command line,
# and `work` is removed (kept with --keep-workdir).
bench_workdir() {
    work="$(mktemp -d "${TMPDIR:-/var/tmp}/$1.XXXXXX")"
    py_pid=""
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM HUP
}

bench_cleanup() {
    local rc=$? p pid
    trap - EXIT INT TERM HUP
    if [[ -n "$py_pid" ]] && kill -0 "$py_pid" 2>/dev/null; then
        kill -TERM "$py_pid" 2>/dev/null || true
        wait "$py_pid" 2>/dev/null || true
    fi
    # Backstop: the driver normally stops everything itself.
    for p in /proc/[0-9]*; do
        pid="${p#/proc/}"
        if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF "$work/"; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    if ((keep)); then
        echo "$tag work directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}

# bench_python SCRIPT ARG...: runs a driver with bench/ on its import path (for
# benchlib.py) and waits for it.
bench_python() {
    PYTHONPATH="$bench_dir${PYTHONPATH:+:$PYTHONPATH}" python3 "$@" &
    py_pid=$!
    wait "$py_pid"
}
