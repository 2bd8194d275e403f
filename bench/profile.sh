#!/usr/bin/env bash
# Where aar's CPU goes while it serves one kind of request: `perf record` on the daemon
# during REPS runs of the workload (the benchmark's TLS terms: TLS 1.3,
# TLS_AES_128_GCM_SHA256, HTTP/1.1, client certificate, loopback), then perf's report by
# shared object and by symbol, with and without the callers' share. Measurement only.
#
#   bench/profile.sh [--what download|upload|metadata|s3-upload] [--aar PATH] [--reps N]
#                    [--out DIR] [--s3s-fs PATH]
#
# download (default): a 1 GiB image read warm from the page cache, one client (curl).
# upload: a 1 GiB image uploaded whole with one PATCH (curl), a fresh image each run.
# metadata: `GET /1.0/applications/profile` for 5 s per run with wrk -t2 -c32 (keep-alive),
# through the benchmark's client-certificate shim (built here with cc).
# s3-upload: the upload, with aar's S3 backend writing into s3s-fs on loopback (plain HTTP,
# as in bench/s3/run.sh, which builds s3s-fs into target/bench-tools).
#
# Needs perf (Debian `linux-perf`), curl, openssl, and root or perf_event_paranoid <= 1
# (metadata: wrk and cc too). The call graphs are unwound from DWARF (`--call-graph
# dwarf`): the release build keeps line tables but no frame pointers. Writes
# DIR/summary.txt and DIR/report-*.txt (default: a directory in the work directory,
# printed at the end) and removes the daemon's data on exit; bench/perf_shares.py sorts
# the call-graph samples by activity (DIR/shares.txt); bench/results/*-profile.md read
# one run each.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
aar=target/release/aar
what=download
kind=""
s3s_fs=target/bench-tools/bin/s3s-fs
reps=3
out=""
while (($#)); do
    case "$1" in
        --what) what=$2; shift 2 ;;
        --s3s-fs) s3s_fs=$2; shift 2 ;;
        --aar) aar=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "profile: unknown argument $1" >&2; exit 2 ;;
    esac
done
kind=$what
case "$what" in
    download|upload|s3-upload) tools="perf curl openssl" ;;
    metadata) tools="perf curl openssl wrk cc" ;;
    *) echo "profile: --what takes download, upload, metadata or s3-upload, not $what" >&2; exit 2 ;;
esac
for tool in $tools; do
    command -v "$tool" >/dev/null || { echo "profile: $tool is missing" >&2; exit 1; }
done
[ -x "$aar" ] || { echo "profile: no aar at $aar (cargo build --release -p aar)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/aar-profile.XXXXXX")
out=${out:-$work/out}
mkdir -p "$out"
daemon=""
s3=""
cleanup() {
    local pid
    for pid in $daemon $s3; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work/data" "$work/blob.bin" "$work/s3"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
storage="storage: {fs: {root-directory: $work/data}}"
if [ "$what" = s3-upload ]; then
    [ -x "$s3s_fs" ] || { echo "profile: no s3s-fs at $s3s_fs (bench/s3/run.sh builds it)" >&2; exit 1; }
    s3port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$work/s3/profile"
    "$s3s_fs" --host 127.0.0.1 --port "$s3port" --access-key AKIAAARPROFILE000001 \
        --secret-key profileSecretKey/0000000000000000000000000 "$work/s3" >"$work/s3s-fs.log" 2>&1 &
    s3=$!
    for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$s3port") 2>/dev/null && break; sleep 0.1; done
    storage="storage: {s3: {region: us-east-1, bucket: profile, endpoint: 'http://127.0.0.1:$s3port', path-style: true, access-key: AKIAAARPROFILE000001, secret-access-key: profileSecretKey/0000000000000000000000000}}"
    what=upload  # the same workload; the shares below are sorted as an S3 upload's
fi
cat >"$work/aar.yaml" <<EOF
http: {addr: 127.0.0.1:$port, tls: {min-version: "1.3"}}
metrics: {addr: 127.0.0.1:$mport}
state-directory: $work/state
$storage
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
upload() {
    local location
    location=$("${C[@]}" -X POST -H "X-AAR-Digest: $digest" -H "X-AAR-Size: $((1 << 30))" \
        -o /dev/null -w '%header{location}' "$R/1.0/uploads")
    "${C[@]}" -X PATCH -H "Upload-Offset: 0" -H "Content-Type: application/octet-stream" \
        -T "$work/blob.bin" -o /dev/null "$R$location"
}
upload
printf '{"manifest": "name: profile\\ninstance-type: a2.3\\nboot-package: com.example.p\\n", "images": {"amd64": "%s"}}' \
    "$digest" >"$work/publish.json"
"${C[@]}" -X POST --data-binary @"$work/publish.json" -o /dev/null "$R/1.0/applications/profile/versions"
image=$R/1.0/applications/profile/versions/1/images/amd64
# Warm: the upload bypassed the page cache (O_DIRECT); the benchmark measures warm reads.
"${C[@]}" -o /dev/null "$image"
if [ "$what" = metadata ]; then
    cc -O2 -shared -fPIC -o "$work/shim.so" bench/client_cert_shim.c -ldl
    printf 'openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\nsystem_default = tls\n[tls]\nMinProtocol = TLSv1.3\nCiphersuites = TLS_AES_128_GCM_SHA256\n' \
        >"$work/openssl-wrk.cnf"
fi

cpu() { awk '{print $14 + $15}' "/proc/$daemon/stat"; }
tck=$(getconf CLK_TCK)
# prepare: what a run needs that is not measured (a fresh image for an upload: its first
# bytes changed and its digest taken again).
prepare() {
    [ "$what" = upload ] || return 0
    head -c 16 /dev/urandom | dd of="$work/blob.bin" bs=16 count=1 conv=notrunc status=none
    digest=sha256:$(sha256sum "$work/blob.bin" | cut -d' ' -f1)
}
# act: one measured run; prints how many units it did (GiB, or requests).
act() {
    case "$what" in
        download) "${C[@]}" -o /dev/null "$image"; echo 1 ;;
        upload) upload; echo 1 ;;
        metadata)
            OPENSSL_CONF="$work/openssl-wrk.cnf" LD_PRELOAD="$work/shim.so" \
                BENCH_CLIENT_CERT="$work/client.crt" BENCH_CLIENT_KEY="$work/client.key" \
                wrk -t2 -c32 -d5s "$R/1.0/applications/profile" | awk '/requests in/ {print $1}' ;;
    esac
}
# measure LABEL: `reps` runs; appends the daemon's CPU per unit and the rate to the summary.
measure() {
    local label=$1 units=0 cpu_ticks=0 wall=0 c0 t0 n
    for _ in $(seq "$reps"); do
        prepare
        c0=$(cpu)
        t0=$(date +%s.%N)
        n=$(act)
        wall=$(python3 -c "import sys; print(float(sys.argv[1]) + float(sys.argv[2]) - float(sys.argv[3]))" "$wall" "$(date +%s.%N)" "$t0")
        cpu_ticks=$((cpu_ticks + $(cpu) - c0))
        units=$((units + n))
    done
    python3 -c 'import sys
label, what, ticks, tck, units, wall, reps = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
cpu = ticks / tck
if what == "metadata":
    print(f"{label}: {reps:.0f} runs of 5 s, {units / wall:,.0f} requests/s, server CPU {cpu / units * 1e6:.1f} µs/request")
else:
    print(f"{label}: {reps:.0f} {what}s of 1 GiB, server CPU {cpu / units:.2f} s/GiB, {units * 1.073741824 / wall:.2f} GB/s")' \
        "$label" "$what" "$cpu_ticks" "$tck" "$units" "$wall" "$reps" | tee -a "$out/summary.txt"
}
# record NAME PERF-ARGS...: the same runs with perf recording the daemon.
record() {
    local name=$1 perf_pid
    shift
    perf record -q "$@" -p "$daemon" -o "$work/$name.data" 2>"$work/perf-$name.log" &
    perf_pid=$!
    sleep 1
    measure "$name (under perf)"
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
}
: >"$out/summary.txt"
# Without perf: the figure the benchmark would report on this machine now.
measure "no perf"
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
    | python3 bench/perf_shares.py "$kind" >"$out/shares.txt"
cat "$out/shares.txt"
echo "profile: reports in $out (perf data in $work)"
