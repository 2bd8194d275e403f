#!/usr/bin/env bash
# Benchmark aar's S3 mode, and Debian's docker-registry in S3 mode beside it, on this
# machine, over TLS 1.3 on 127.0.0.1 with client certificates. See bench/s3/README.md.
#
#   bench/s3/run.sh [--aar PATH] [--size BYTES] [--peer-size BYTES] [--duration S]
#                   [--quiet-wait S] [--only both|aar|peer|startup] [--helpers DIR]
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
tag="[bench-s3]"
# shellcheck source=bench/lib.sh
source "$here/../lib.sh"

bench_args 12 "$@"
command_line="bench/s3/run.sh${*:+ $*}"
venv=()
python3 -c 'import venv, ensurepip' 2>/dev/null || venv=(python3-venv)
bench_packages "${venv[@]}"
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

bench_workdir aar-bench-s3
bench_python "$here/bench_s3.py" --workdir "$work" --command "$command_line" \
    --s3s-fs "$tools/bin/s3s-fs" --moto "$moto" --moto-python "$moto_python" \
    --repo "$repo" "${args[@]}"
