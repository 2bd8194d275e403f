#!/usr/bin/env python3
"""Two aar builds side by side, in one run: the evidence a change to the daemon keeps.

    bench/ab.py --before PATH --after PATH [--reps 5] [--size-mib 1024] [--out FILE]

Each repetition starts each build afresh (order alternating, so drift hurts neither) and
measures, with the main benchmark's TLS terms (TLS 1.3, TLS_AES_128_GCM_SHA256, HTTP/1.1
keep-alive, client certificate, loopback): one upload of a random image with curl, one
warm download of it with curl, and metadata GETs with wrk -t2 -c32 for 5 s. The daemon's
CPU comes from /proc (utime + stime of all its threads) around each measurement, so it
is the server's cost only. Prints a Markdown report: medians, every sample, and the
after/before ratio of the medians. Needs curl, wrk, openssl and a C compiler (the wrk
client-certificate shim, see bench/README.md).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import (  # noqa: E402
    CIPHER,
    LIVE,
    MIB,
    BenchError,
    Tls,
    cpu_seconds,
    free_port,
    kill_all,
    log,
    popen,
    proc_status_kib,
    random_file,
    run,
    set_log_tag,
    stop,
    wait_port,
    wait_quiet,
    wrk,
)

ROWS = [
    ("upload_mbs", "1 image upload: throughput (MB/s)", "{:.0f}"),
    ("upload_cpu", "1 image upload: server CPU (s/GiB)", "{:.2f}"),
    ("download_mbs", "1 image download, warm: throughput (MB/s)", "{:.0f}"),
    ("download_cpu", "1 image download, warm: server CPU (s/GiB)", "{:.3f}"),
    ("meta_rps", "metadata GET: requests/s", "{:,.0f}"),
    ("meta_cpu", "metadata GET: server CPU per request (µs)", "{:.1f}"),
    ("hwm", "peak RSS, VmHWM (MiB)", "{:.1f}"),
]


class Daemon:
    def __init__(self, binary: str, work: Path, tls: Tls):
        self.dir = Path(tempfile.mkdtemp(dir=work))
        self.port = free_port()
        cfg = self.dir / "aar.yaml"
        cfg.write_text(
            f'http: {{addr: 127.0.0.1:{self.port}, tls: {{min-version: "1.3"}}}}\n'
            f"metrics: {{addr: 127.0.0.1:{free_port()}}}\n"
            f"state-directory: {self.dir}/state\n"
            f"storage: {{fs: {{root-directory: {self.dir}/data}}}}\n"
        )
        run([binary, "trust", "add", "--config", cfg, tls.client_crt, "--publisher"])
        with open(self.dir / "aar.log", "wb") as log_file:
            self.proc = popen(
                [binary, "serve", "--config", cfg],
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                start_new_session=True,
            )
        wait_port(self.port)
        self.base = f"https://127.0.0.1:{self.port}"
        self.curl = [
            "curl", "-sS", "--fail", "--noproxy", "*", "-k", "--http1.1", "--tlsv1.3",
            "--tls13-ciphers", CIPHER, "--cert", str(tls.client_crt),
            "--key", str(tls.client_key),
        ]  # fmt: skip

    def timed(self, args: list) -> tuple[float, float, str]:
        """(wall s, server CPU s, stdout) of one curl call."""
        c0, t0 = cpu_seconds(self.proc.pid), time.monotonic()
        out = run(self.curl + args, timeout=600).stdout.decode()
        return time.monotonic() - t0, cpu_seconds(self.proc.pid) - c0, out

    def close(self) -> None:
        stop(self.proc)
        run(["rm", "-rf", str(self.dir)])


def one(binary: str, work: Path, tls: Tls, blob: Path, digest: str, size: int) -> dict:
    d = Daemon(binary, work, tls)
    try:
        gib = size / (1 << 30)
        loc = d.timed(
            ["-X", "POST", "-H", f"X-AAR-Digest: {digest}", "-H", f"X-AAR-Size: {size}",
             "-o", "/dev/null", "-w", "%header{location}", f"{d.base}/1.0/uploads"]
        )[2]  # fmt: skip
        wall, cpu, _ = d.timed(
            ["-X", "PATCH", "-H", "Upload-Offset: 0", "-H",
             "Content-Type: application/octet-stream", "-T", str(blob), "-o", "/dev/null",
             f"{d.base}{loc}"]
        )  # fmt: skip
        res = {"upload_mbs": size / 1e6 / wall, "upload_cpu": cpu / gib}
        manifest = "name: ab\\ninstance-type: a2.3\\nboot-package: com.example.ab\\n"
        body = f'{{"manifest": "{manifest}", "images": {{"amd64": "{digest}"}}}}'
        d.timed(["-X", "POST", "--data-binary", body, "-o", "/dev/null",
                 f"{d.base}/1.0/applications/ab/versions"])  # fmt: skip
        image = f"{d.base}/1.0/applications/ab/versions/1/images/amd64"
        d.timed(["-o", "/dev/null", image])  # warm: the upload bypassed the page cache
        wall, cpu, _ = d.timed(["-o", "/dev/null", image])
        res |= {"download_mbs": size / 1e6 / wall, "download_cpu": cpu / gib}
        c0 = cpu_seconds(d.proc.pid)
        w = wrk(tls, f"{d.base}/1.0/applications/ab", threads=2, connections=32, duration=5)
        cpu = cpu_seconds(d.proc.pid) - c0
        if any(w[k] for k in ("status", "connect", "read", "write", "timeout")):
            raise BenchError(f"metadata run had errors: {w['text'][-400:]}")
        rps = w["requests"] / (w["duration_us"] / 1e6)
        res |= {"meta_rps": rps, "meta_cpu": cpu / max(1, w["requests"]) * 1e6}
        res["hwm"] = proc_status_kib(d.proc.pid, "VmHWM") / 1024
        return res
    finally:
        d.close()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--quiet-wait", type=float, default=30)
    ap.add_argument("--out")
    args = ap.parse_args()
    set_log_tag("ab", True)
    work = Path(tempfile.mkdtemp(prefix="aar-ab.", dir="/var/tmp"))
    builds = {"before": args.before, "after": args.after}
    samples: dict[str, dict[str, list[float]]] = {k: {} for k in builds}
    try:
        tls = Tls(work, HERE)
        tls.make()
        size = args.size_mib * MIB
        blob = work / "blob.bin"
        digest = random_file(blob, size)
        started = datetime.datetime.now(datetime.timezone.utc)
        for rep in range(args.reps):
            order = list(builds) if rep % 2 == 0 else list(reversed(builds))
            for name in order:
                wait_quiet(args.quiet_wait)
                log(f"rep {rep + 1}/{args.reps}: {name}")
                for key, value in one(builds[name], work, tls, blob, digest, size).items():
                    samples[name].setdefault(key, []).append(value)
    finally:
        kill_all()
        run(["rm", "-rf", str(work)], check=False)
    med = {n: {k: statistics.median(v) for k, v in s.items()} for n, s in samples.items()}
    lines = [
        "# aar before and after, one run",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; medians of {args.reps} repetitions, order "
        "alternating; image of {:.0f} MiB of random bytes; MB = 10^6 bytes".format(args.size_mib),
        f"- before: `{args.before}`; after: `{args.after}`",
        "",
        "| measure | before | after | after/before |",
        "|---|---:|---:|---:|",
    ]
    for key, label, fmt in ROWS:
        b, a = med["before"][key], med["after"][key]
        lines.append(f"| {label} | {fmt.format(b)} | {fmt.format(a)} | {a / b:.2f}× |")
    lines += ["", "Samples (in run order):", ""]
    for key, label, fmt in ROWS:
        for name in builds:
            vals = ", ".join(fmt.format(v) for v in samples[name][key])
            lines.append(f"- {label}, {name}: {vals}")
    report = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"ab: {e}", file=sys.stderr)
        kill_all()
        sys.exit(1)
    finally:
        if LIVE:
            kill_all()
