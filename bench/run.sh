#!/usr/bin/env bash
# Benchmark aar against Debian's docker-registry (CNCF distribution 2.8) on this
# machine, over TLS 1.3 on 127.0.0.1 with client certificates. See bench/README.md.
#
#   bench/run.sh [--reps N] [--aar PATH] [--only both|aar|peer|nginx|polling|startup]
#                [--size BYTES] [--duration S] [--keep-workdir] [--output FILE]
#
# --only nginx|polling|startup runs one of the scenarios that have no docker-registry
# figure (nginx serving the metadata bytes, 1,000 polling clients, start-up on 100,000
# versions) and writes bench/results/latest-SCENARIO.md.
# Needs root (or the packages already installed): docker-registry wrk curl openssl nginx,
# and a C compiler for the small wrk client-certificate shim.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tag="[bench]"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

bench_args 12 "$@"
command_line="bench/run.sh${*:+ $*}"
bench_packages
bench_workdir aar-bench
bench_python "$here/bench.py" --workdir "$work" --command "$command_line" "${args[@]}"
