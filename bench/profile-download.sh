#!/usr/bin/env bash
# Where aar's CPU goes while it serves a 1 GiB download to one client: `perf record` on
# the daemon during REPS downloads (the benchmark's TLS terms: TLS 1.3,
# TLS_AES_128_GCM_SHA256, HTTP/1.1, client certificate, loopback), then perf's report
# by shared object and by symbol, with and without the callers' share. Measurement only.
#
#   bench/profile-download.sh [--aar PATH] [--reps N] [--out DIR]
#
# Needs perf (Debian `linux-perf`), curl, openssl, and root or perf_event_paranoid <= 1.
# The call graphs are unwound from DWARF (`--call-graph dwarf`): the release build keeps
# line tables but no frame pointers. Writes DIR/summary.txt and DIR/report-*.txt (default:
# a directory in the work directory, printed at the end) and removes the daemon's data on
# exit; bench/perf_shares.py sorts the call-graph samples by activity (DIR/shares.txt);
# bench/results/download-profile.md reads one run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
aar=target/release/aar
reps=3
out=""
while (($#)); do
    case "$1" in
        --aar) aar=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "profile-download: unknown argument $1" >&2; exit 2 ;;
    esac
done
for tool in perf curl openssl; do
    command -v "$tool" >/dev/null || { echo "profile-download: $tool is missing" >&2; exit 1; }
done
[ -x "$aar" ] || { echo "profile-download: no aar at $aar (cargo build --release -p aar)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/aar-profile.XXXXXX")
out=${out:-$work/out}
mkdir -p "$out"
daemon=""
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    rm -rf "$work/data" "$work/blob.bin"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/aar.yaml" <<EOF
http: {addr: 127.0.0.1:$port, tls: {min-version: "1.3"}}
metrics: {addr: 127.0.0.1:$mport}
state-directory: $work/state
storage: {fs: {root-directory: $work/data}}
EOF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=profile \
    -keyout "$work/client.key" -out "$work/client.crt" 2>/dev/null
"$aar" trust add --config "$work/aar.yaml" "$work/client.crt" --publisher >/dev/null 2>&1
"$aar" serve --config "$work/aar.yaml" >"$work/aar.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do grep -q serving "$work/aar.log" && break; sleep 0.1; done
grep -q serving "$work/aar.log" || { cat "$work/aar.log" >&2; exit 1; }

C=(curl -sS --noproxy '*' -k --http1.1 --tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256
    --cert "$work/client.crt" --key "$work/client.key")
R=https://127.0.0.1:$port
head -c 1G /dev/urandom >"$work/blob.bin"
digest=sha256:$(sha256sum "$work/blob.bin" | cut -d' ' -f1)
upload=$("${C[@]}" -X POST -H "X-AAR-Digest: $digest" -H "X-AAR-Size: $((1 << 30))" \
    -o /dev/null -w '%header{location}' "$R/1.0/uploads")
"${C[@]}" -X PATCH -H "Upload-Offset: 0" -H "Content-Type: application/octet-stream" \
    -T "$work/blob.bin" -o /dev/null "$R$upload"
printf '{"manifest": "name: profile\\ninstance-type: a2.3\\nboot-package: com.example.p\\n", "images": {"amd64": "%s"}}' \
    "$digest" >"$work/publish.json"
"${C[@]}" -X POST --data-binary @"$work/publish.json" -o /dev/null "$R/1.0/applications/profile/versions"
image=$R/1.0/applications/profile/versions/1/images/amd64
# Warm: the upload bypassed the page cache (O_DIRECT); the benchmark measures warm reads.
"${C[@]}" -o /dev/null "$image"

cpu() { awk '{print $14 + $15}' "/proc/$daemon/stat"; }
tck=$(getconf CLK_TCK)
# record NAME PERF-ARGS...: perf on the daemon during `reps` downloads; prints the CPU cost.
record() {
    local name=$1 c0 c1 t0 t1 perf_pid
    shift
    perf record -q "$@" -p "$daemon" -o "$work/$name.data" 2>"$work/perf-$name.log" &
    perf_pid=$!
    sleep 1
    c0=$(cpu)
    t0=$(date +%s.%N)
    for _ in $(seq "$reps"); do "${C[@]}" -o /dev/null "$image"; done
    t1=$(date +%s.%N)
    c1=$(cpu)
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    python3 -c 'import sys; c0, c1, tck, reps, t0, t1 = map(float, sys.argv[2:]); print(f"{sys.argv[1]}: {reps:.0f} downloads of 1 GiB, server CPU {(c1 - c0) / tck / reps:.2f} s/GiB, {reps * 1.073741824 / (t1 - t0):.2f} GB/s (under perf)")' \
        "$name" "$c0" "$c1" "$tck" "$reps" "$t0" "$t1" | tee -a "$out/summary.txt"
}
: >"$out/summary.txt"
# Without perf: the figure the benchmark would report on this machine now.
c0=$(cpu); for _ in $(seq "$reps"); do "${C[@]}" -o /dev/null "$image"; done; c1=$(cpu)
python3 -c 'import sys; c0, c1, tck, reps = map(float, sys.argv[1:]); print(f"no perf: {reps:.0f} downloads of 1 GiB, server CPU {(c1 - c0) / tck / reps:.2f} s/GiB")' \
    "$c0" "$c1" "$tck" "$reps" | tee -a "$out/summary.txt"
# Flat, at a high rate: where the samples land. Then with DWARF call graphs (slower, so
# fewer samples): which of the daemon's paths each kernel or library cost belongs to.
record flat -F 4999
record graph -F 999 --call-graph dwarf,16384
perf report -i "$work/flat.data" --no-children --sort dso --stdio -g none 2>/dev/null >"$out/report-dso.txt"
perf report -i "$work/flat.data" --no-children --sort dso,sym --stdio -g none \
    --percent-limit 0.3 2>/dev/null >"$out/report-sym.txt"
perf report -i "$work/graph.data" --children --sort sym --stdio -g none \
    --percent-limit 1 2>/dev/null >"$out/report-children.txt"
perf script -i "$work/graph.data" -F tid,ip,sym 2>/dev/null \
    | python3 bench/perf_shares.py >"$out/shares.txt"
cat "$out/shares.txt"
echo "profile-download: reports in $out (perf data in $work)"
