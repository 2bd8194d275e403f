#!/usr/bin/env python3
"""aar's S3 mode beside docker-registry's, on loopback. Driven by bench/s3/run.sh.

What is measured (see bench/s3/README.md for the method):
  * redirect answers per second, p99 and daemon CPU per redirect (wrk over HTTPS,
    keep-alive, client certificate via bench/client_cert_shim.c), for aar with presigned
    URLs, aar with CloudFront signed URLs, and docker-registry (S3 driver, presigned);
  * upload throughput, daemon CPU and peak RSS: aar into s3s-fs (multipart, --size,
    4 GiB by default) and, at --peer-size, aar and docker-registry into moto;
  * start-up on a bucket of --startup-versions (10,000) version records written straight
    into s3s-fs's files: time to listening and to the first full listing, RSS; for a
    first start without the index snapshot (which writes it) and for a start with it.

Long on purpose: it is the whole S3 benchmark; what both benchmarks share is in
bench/benchlib.py.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (
    CIPHER,
    BenchError,
    Tls,
    cpu_seconds,
    free_port,
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

ACCESS_KEY = "AKIAAARBENCH00000001"
# The key pair of the loopback S3 servers the benchmark starts, nothing else.
SECRET_KEY = "aarBenchSecretKey/000000000000000000000+"  # noqa: S105
BUCKET = "aar0"
QUIET_WAIT = [30]  # --quiet-wait, set in main()


def peak_rss_mib(pid: int) -> float:
    return proc_status_kib(pid, "VmHWM") / 1024


def quiet_wait(limit: float) -> str:
    """Waits (up to `limit` seconds) for the machine to be under 25% busy; returns the
    busy share seen last, for the report."""
    return f"{wait_quiet(limit) * 100:.0f}%"


class Proc:
    def __init__(self, name: str, cmd, log_path: Path, env=None, stdout=None):
        self.name = name
        self.log = log_path
        with open(log_path, "ab") as err, open(log_path, "ab") as out:
            self.p = popen(
                cmd, stdout=stdout or out, stderr=err, env=env, stdin=subprocess.DEVNULL
            )

    @property
    def pid(self) -> int:
        return self.p.pid

    def stop(self) -> None:
        stop(self.p)

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""


def curl(tls: Tls, *args, out="/dev/null"):
    """curl with the client certificate over TLS 1.3 / HTTP/1.1; returns
    (status, time_total, headers text)."""
    hdr = tls.dir / "curl-headers.txt"
    cp = run(
        [
            "curl",
            "-sS",
            "-k",
            "--http1.1",
            "--tlsv1.3",
            "--cert",
            tls.client_crt,
            "--key",
            tls.client_key,
            "-o",
            out,
            "-D",
            hdr,
            "-w",
            "%{http_code} %{time_total}",
            *args,
        ],
        timeout=3600,
    )
    status, took = cp.stdout.decode().split()
    return int(status), float(took), hdr.read_text(errors="replace")


def timed_upload(server, expected: int, what: str, *curl_args) -> dict:
    """The request that carries an upload's bytes, once the machine is quiet: curl's
    time_total, the server's CPU time over it and its peak RSS after it."""
    server.busy = quiet_wait(server.quiet)
    cpu0 = cpu_seconds(server.proc.pid)
    status, took, headers = curl(server.tls, *curl_args)
    if status != expected:
        raise BenchError(f"{what}: {status}\n{headers}\n{server.proc.tail()}")
    return {
        "seconds": took,
        "cpu": cpu_seconds(server.proc.pid) - cpu0,
        "rss": peak_rss_mib(server.proc.pid),
    }


def redirect_wrk(tls: Tls, url: str, args) -> dict:
    res = wrk(
        tls,
        url,
        threads=args.wrk_threads,
        connections=args.wrk_connections,
        duration=args.duration,
    )
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    errors = res["status"] + res["connect"] + res["read"] + res["write"] + res["timeout"]
    if errors:
        raise BenchError(f"wrk saw errors (statuses >= 400 or socket errors): {res}")
    return res


def measure_redirects(label, tls, url, pid, args, results, checks):
    # The answer must be a 307 to somewhere else; wrk counts only >= 400 as errors.
    status, _, headers = curl(tls, url)
    if status != 307 or "location:" not in headers.lower():
        raise BenchError(f"{label}: expected a 307 with Location, got {status}\n{headers}")
    checks.append(
        f"{label}: `GET /{url.split('//', 1)[1].split('/', 1)[1]}` answers 307 with a Location"
    )
    redirect_wrk(tls, url, argparse.Namespace(**{**vars(args), "duration": 2}))  # warm-up
    load = quiet_wait(args.quiet_wait)
    before = cpu_seconds(pid)
    res = redirect_wrk(tls, url, args)
    cpu = cpu_seconds(pid) - before
    results.append(
        {
            "what": f"redirects: {label}",
            "rps": res["rps"],
            "p99_ms": res["p99_us"] / 1000,
            "cpu_us": cpu / res["requests"] * 1e6,
            "load": load,
        }
    )
    log(f"{label}: {res['rps']:.0f} redirects/s, {cpu / res['requests'] * 1e6:.1f} µs CPU each")


class Aar:
    def __init__(self, binary: Path, work: Path, tls: Tls, name: str, storage: str):
        self.dir = work / name
        self.dir.mkdir()
        self.port = free_port()
        self.config = self.dir / "config.yaml"
        self.config.write_text(
            f"http:\n  addr: 127.0.0.1:{self.port}\n  limits:\n    max-image-size: 64GiB\n"
            f"    body-timeout: 5m\nstate-directory: {self.dir / 'state'}\n{storage}\n"
            # Its own metrics port: the default one may be taken by another aar here.
            f"metrics:\n  addr: 127.0.0.1:{free_port()}\n"
            "log:\n  level: warn\n"
        )
        run([binary, "trust", "add", tls.client_crt, "--publisher", "--config", self.config])
        self.proc = Proc(name, [binary, "serve", "--config", self.config], self.dir / "aar.log")
        try:
            wait_port(self.port, 60)
        except BenchError:
            raise BenchError(f"{name} did not start:\n{self.proc.tail()}") from None
        self.tls = tls
        self.quiet = QUIET_WAIT[0]
        self.base = f"https://127.0.0.1:{self.port}"

    def upload(self, path: Path, digest: str, size: int) -> dict:
        status, _, headers = curl(
            self.tls,
            "-X",
            "POST",
            "-H",
            f"X-AAR-Digest: {digest}",
            "-H",
            f"X-AAR-Size: {size}",
            f"{self.base}/1.0/uploads",
        )
        if status != 201:
            raise BenchError(f"POST /1.0/uploads: {status}\n{headers}\n{self.proc.tail()}")
        location = re.search(r"(?im)^location:\s*(\S+)", headers).group(1)
        return timed_upload(
            self,
            200,
            "PATCH",
            "-X",
            "PATCH",
            "-H",
            "Upload-Offset: 0",
            "-H",
            "Content-Type: application/octet-stream",
            "-T",
            path,
            f"{self.base}{location}",
        )

    def publish(self, digest: str) -> str:
        body = json.dumps(
            {
                "version": 1,
                "manifest": "name: bench\ninstance-type: a2.3\n",
                "images": {"amd64": digest},
            }
        )
        status, _, headers = curl(
            self.tls,
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
            f"{self.base}/1.0/applications/bench/versions",
        )
        if status != 201:
            raise BenchError(f"publish: {status}\n{headers}\n{self.proc.tail()}")
        return f"{self.base}/1.0/applications/bench/versions/1/images/amd64"


class Registry:
    """docker-registry (CNCF distribution 2.8) with its S3 driver against moto."""

    def __init__(self, work: Path, tls: Tls, endpoint: str):
        self.dir = work / "registry"
        self.dir.mkdir()
        self.port = free_port()
        config = self.dir / "config.yml"
        config.write_text(f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
    region: us-east-1
    regionendpoint: {endpoint}
    bucket: {BUCKET}
    accesskey: {ACCESS_KEY}
    secretkey: {SECRET_KEY}
    secure: false
    v4auth: true
    chunksize: 8388608
  redirect:
    disable: false
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{self.port}
  tls:
    certificate: {tls.peer_crt}
    key: {tls.peer_key}
    clientcas:
      - {tls.client_crt}
""")
        # It crashes at start while AWS_CA_BUNDLE is set (see bench/s3/README.md).
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        self.proc = Proc(
            "registry", ["docker-registry", "serve", config], self.dir / "registry.log", env=env
        )
        try:
            wait_port(self.port, 30)
        except BenchError:
            raise BenchError(f"docker-registry did not start:\n{self.proc.tail()}") from None
        self.tls = tls
        self.quiet = QUIET_WAIT[0]
        self.base = f"https://127.0.0.1:{self.port}"

    def upload(self, path: Path, digest: str) -> dict:
        status, _, headers = curl(self.tls, "-X", "POST", f"{self.base}/v2/bench/blobs/uploads/")
        if status != 202:
            raise BenchError(f"registry POST upload: {status}\n{headers}\n{self.proc.tail()}")
        location = re.search(r"(?im)^location:\s*(\S+)", headers).group(1)
        if location.startswith("/"):
            location = self.base + location
        sep = "&" if "?" in location else "?"
        return timed_upload(
            self,
            201,
            "registry PUT",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "-T",
            path,
            f"{location}{sep}digest={digest}",
        )


def measure_startup(aar_bin, work, tls, endpoint, s3_root, args, results, checks):
    """Start-up on a bucket of many versions: one published through the API, its record
    copied under other names into s3s-fs's directory (an object there is a plain file)."""
    # The upload scenario may have published `bench` into this bucket already: start from
    # no versions, so the seed's publish is the first and only one.
    shutil.rmtree(s3_root / BUCKET / "apps", ignore_errors=True)
    seed = Aar(aar_bin, work, tls, "aar-startup", s3_section(endpoint))
    empty_rss = proc_status_kib(seed.proc.pid, "VmRSS") / 1024
    image = work / "startup-image.bin"
    digest = random_file(image, 1 << 20)
    seed.upload(image, digest, 1 << 20)
    seed.publish(digest)
    seed.proc.stop()
    image.unlink()
    apps = s3_root / BUCKET / "apps"
    record = json.loads((apps / "bench" / "versions" / "1.json").read_text())
    shutil.rmtree(apps / "bench")
    per_app = max(1, args.startup_versions // args.startup_apps)
    total = per_app * args.startup_apps
    log(f"writing {args.startup_apps} x {per_app} version records into s3s-fs")
    for i in range(args.startup_apps):
        name = f"app{i:05d}"
        folder = apps / name / "versions"
        folder.mkdir(parents=True)
        own = record["manifest"].replace("name: bench", f"name: {name}")
        for v in range(1, per_app + 1):
            rec = dict(record, application=name, version=v, manifest=own)
            (folder / f"{v}.json").write_text(json.dumps(rec, indent=2))
    snapshot = s3_root / BUCKET / "index" / "versions.json"
    listing = work / "startup-listing.json"

    def one_start(first: bool) -> dict:
        busy = quiet_wait(args.quiet_wait)
        t0 = time.monotonic()
        proc = Proc(
            "aar-startup", [aar_bin, "serve", "--config", seed.config], seed.dir / "aar.log"
        )
        try:
            # aar listens only once its index is loaded.
            wait_port(seed.port, 300)
            ready = time.monotonic() - t0
            rss = proc_status_kib(proc.pid, "VmRSS") / 1024
            status, took, headers = curl(tls, f"{seed.base}/1.0/applications", out=listing)
            if first:
                # Written after the load, while aar already serves: wait for it, so the
                # next start has it.
                wait_snapshot(snapshot, total, proc)
        finally:
            proc.stop()
        if status != 200:
            raise BenchError(f"GET /1.0/applications: {status}\n{headers}\n{proc.tail()}")
        listed = json.loads(listing.read_text())["metadata"]
        n = sum(len(a["versions"]) for a in listed)
        if len(listed) != args.startup_apps or n != total:
            raise BenchError(
                f"the listing has {len(listed)} applications and {n} versions, expected "
                f"{args.startup_apps} and {total}"
            )
        label = "first start, no snapshot" if first else "start with the snapshot"
        log(f"{label}: listening after {ready:.2f} s, full listing after {ready + took:.2f} s")
        return {"ready": ready, "listed": ready + took, "rss": rss, "busy": busy}

    runs: dict[bool, list[dict]] = {True: [], False: []}
    for _ in range(args.startup_reps):
        # The first start after an upgrade: every record read one by one.
        snapshot.unlink(missing_ok=True)
        runs[True].append(one_start(first=True))
        written = snapshot.read_bytes()
        runs[False].append(one_start(first=False))
        # A start that had read any record one by one would have written it again.
        if snapshot.read_bytes() != written:
            raise BenchError("the start with the snapshot wrote it again: it read records")
    for first, label in [(True, "first start, no snapshot"), (False, "start with the snapshot")]:
        med = {k: statistics.median(r[k] for r in runs[first]) for k in ("ready", "listed", "rss")}
        results.append(
            {
                "what": f"start-up: {total:,} versions in {args.startup_apps:,} applications, "
                f"{label}",
                "ready": med["ready"],
                "listed": med["listed"],
                "rss": med["rss"],
                "rss0": empty_rss,
                "per_version": (med["rss"] - empty_rss) * (1 << 20) / total,
                "reps": args.startup_reps,
                "load": ", ".join(r["busy"] for r in runs[first]),
            }
        )
    checks.append(
        f"start-up: every listing held all {args.startup_apps} applications and {total} "
        "versions; the records are copies of one published through the API (same 1 MiB "
        "image), read by aar through s3s-fs's ListObjectsV2 and GetObject"
    )
    checks.append(
        "start-up: each first start began without index/versions.json and wrote it with "
        f"all {total} records; each start with the snapshot found it so and left it "
        "unchanged (a start that reads any record one by one writes it again)"
    )


def wait_snapshot(path: Path, total: int, proc: Proc, timeout: float = 120) -> None:
    """Waits for the index snapshot aar writes after a load to hold `total` records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if len(json.loads(path.read_bytes())["versions"]) == total:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise BenchError(f"{path} does not hold {total} records after {timeout}s\n{proc.tail()}")


def s3_section(endpoint: str, extra: str = "") -> str:
    return (
        f"storage:\n  s3:\n    region: us-east-1\n    bucket: {BUCKET}\n"
        f"    access-key: {ACCESS_KEY}\n    secret-access-key: {SECRET_KEY}\n"
        f"    endpoint: {endpoint}\n    path-style: true\n{extra}"
    )


def upload_row(label, size, r, server):
    gib = size / (1 << 30)
    return {
        "what": f"upload: {label}",
        "mbps": size / 1e6 / r["seconds"],
        "cpu_s_gib": r["cpu"] / gib,
        "rss": r["rss"],
        "seconds": r["seconds"],
        "load": server.busy,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--command", default="bench/s3/run.sh")
    ap.add_argument("--s3s-fs", type=Path, required=True)
    ap.add_argument("--moto", required=True)
    ap.add_argument("--moto-python", required=True)
    ap.add_argument("--aar", type=Path)
    ap.add_argument(
        "--helpers", type=Path, help="directory of client_cert_shim.c and wrk_report.lua"
    )
    ap.add_argument("--size", type=int, default=4 << 30, help="image size into s3s-fs")
    ap.add_argument(
        "--peer-size", type=int, default=1 << 30, help="image size into moto (held in RAM)"
    )
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument(
        "--quiet-wait",
        type=int,
        default=30,
        help="wait up to S seconds before each timed run for the CPUs to be < 25%% busy",
    )
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk-connections", type=int, default=32)
    ap.add_argument("--only", choices=["both", "aar", "peer", "startup"], default="both")
    ap.add_argument("--startup-versions", type=int, default=10_000)
    ap.add_argument("--startup-apps", type=int, default=100)
    ap.add_argument("--startup-reps", type=int, default=3)
    ap.add_argument("--output", type=Path)
    args = ap.parse_args()
    QUIET_WAIT[0] = args.quiet_wait
    set_log_tag("bench-s3", clock=False)
    work: Path = args.workdir
    helpers = args.helpers or args.repo / "bench"
    aar_bin = args.aar or args.repo / "target/release/aar"
    output = args.output or args.repo / (
        "bench/s3/results/latest-startup.md"
        if args.only == "startup"
        else "bench/s3/results/latest.md"
    )
    for need in [helpers / "client_cert_shim.c", helpers / "wrk_report.lua"]:
        if not need.exists():
            raise BenchError(
                f"{need} is missing: pass --helpers DIR (the directory of bench/run.sh)"
            )
    if args.only != "peer" and not aar_bin.exists():
        raise BenchError(f"{aar_bin} is missing: cargo build --release -p aar")

    tls = Tls(work, helpers)
    tls.make()
    results, checks, procs = [], [], []
    try:
        # ---- the S3 servers ------------------------------------------------------
        s3_port = free_port()
        s3_root = work / "s3s"
        (s3_root / BUCKET).mkdir(parents=True)
        s3 = Proc(
            "s3s-fs",
            [
                args.s3s_fs,
                "--host",
                "127.0.0.1",
                "--port",
                s3_port,
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
                s3_root,
            ],
            work / "s3s-fs.log",
        )
        procs.append(s3)
        wait_port(s3_port)
        s3_endpoint = f"http://127.0.0.1:{s3_port}"

        moto_endpoint = None
        if args.only != "startup" and (args.only in ("both", "peer") or args.peer_size):
            moto_port = free_port()
            env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
            moto = Proc(
                "moto", [args.moto, "-H", "127.0.0.1", "-p", moto_port], work / "moto.log", env=env
            )
            procs.append(moto)
            wait_port(moto_port)
            moto_endpoint = f"http://127.0.0.1:{moto_port}"
            run(
                [
                    args.moto_python,
                    "-c",
                    "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], "
                    "region_name='us-east-1', aws_access_key_id=sys.argv[2], "
                    "aws_secret_access_key=sys.argv[3]).create_bucket(Bucket=sys.argv[4])",
                    moto_endpoint,
                    ACCESS_KEY,
                    SECRET_KEY,
                    BUCKET,
                ],
                env=env,
            )

        if args.only in ("both", "aar"):
            # ---- upload into s3s-fs: throughput and peak RSS at --size ---------------
            big = work / "image.bin"
            log(f"writing {args.size} random bytes")
            digest = random_file(big, args.size)
            aar = Aar(aar_bin, work, tls, "aar-presign", s3_section(s3_endpoint))
            procs.append(aar.proc)
            log("aar: uploading into s3s-fs")
            up = aar.upload(big, digest, args.size)
            results.append(
                upload_row(f"aar → s3s-fs, {args.size / (1 << 30):.2f} GiB", args.size, up, aar)
            )
            checks.append(
                f"aar's upload of {args.size} bytes completed with its SHA-256 verified "
                "(200, complete)"
            )
            url = aar.publish(digest)
            big.unlink()
            s3obj = s3_root / BUCKET / "blobs/sha256" / digest.split(":")[1]
            if s3obj.stat().st_size != args.size:
                raise BenchError("the object in s3s-fs has the wrong size")
            records = list((s3_root / BUCKET / "uploads").glob("*.json"))
            if records:
                raise BenchError(f"upload records left in the bucket: {records}")
            checks.append("the blob in s3s-fs has the uploaded size, and no upload record is left")
            measure_redirects(
                "aar, presigned S3 URL", tls, url, aar.proc.pid, args, results, checks
            )
            aar.proc.stop()

            # ---- CloudFront signed URLs -------------------------------------------
            key = work / "cloudfront.pem"
            run(["openssl", "genrsa", "-traditional", "-out", key, "2048"])
            indented = "".join(f"        {line}\n" for line in key.read_text().splitlines())
            cf = Aar(
                aar_bin,
                work,
                tls,
                "aar-cloudfront",
                s3_section(
                    s3_endpoint,
                    "    cloudfront:\n      base-url: d111111abcdef8.cloudfront.net\n"
                    "      keypair-id: K2JCJMDEHXQW5F\n      duration: 1m\n      private-key: |\n"
                    + indented,
                ),
            )
            procs.append(cf.proc)
            measure_redirects(
                "aar, CloudFront signed URL",
                tls,
                url.replace(str(aar.port), str(cf.port)),
                cf.proc.pid,
                args,
                results,
                checks,
            )
            cf.proc.stop()

        if moto_endpoint:
            small = work / "peer-image.bin"
            log(f"writing {args.peer_size} random bytes for the moto runs")
            digest = random_file(small, args.peer_size)
            if args.only in ("both", "aar"):
                aar = Aar(aar_bin, work, tls, "aar-moto", s3_section(moto_endpoint))
                procs.append(aar.proc)
                up = aar.upload(small, digest, args.peer_size)
                results.append(
                    upload_row(
                        f"aar → moto, {args.peer_size / (1 << 30):.2f} GiB",
                        args.peer_size,
                        up,
                        aar,
                    )
                )
                url = aar.publish(digest)
                measure_redirects(
                    "aar, presigned (moto)", tls, url, aar.proc.pid, args, results, checks
                )
                aar.proc.stop()
            if args.only in ("both", "peer"):
                reg = Registry(work, tls, moto_endpoint)
                procs.append(reg.proc)
                up = reg.upload(small, digest)
                results.append(
                    upload_row(
                        f"docker-registry → moto, {args.peer_size / (1 << 30):.2f} GiB",
                        args.peer_size,
                        up,
                        reg,
                    )
                )
                measure_redirects(
                    "docker-registry, presigned (moto)",
                    tls,
                    f"{reg.base}/v2/bench/blobs/{digest}",
                    reg.proc.pid,
                    args,
                    results,
                    checks,
                )
                reg.proc.stop()
            small.unlink()

        if args.only in ("both", "aar", "startup"):
            measure_startup(aar_bin, work, tls, s3_endpoint, s3_root, args, results, checks)
    finally:
        for p in reversed(procs):
            p.stop()

    report = render(args, results, checks)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)
    print(report)
    return 0


def render(args, results, checks) -> str:
    def ver(cmd):
        cp = run(cmd, check=False)
        return (
            (cp.stdout or cp.stderr).decode().strip().splitlines()[0]
            if (cp.stdout or cp.stderr)
            else "?"
        )

    lines = [
        f"# aar S3 benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"`{args.command}` on {os.cpu_count()} CPUs; {ver(['docker-registry', '--version'])}; "
        f"{ver(['wrk', '-v'])}; TLS 1.3 {CIPHER}, HTTP/1.1 keep-alive, client certificate; "
        f"wrk -t{args.wrk_threads} -c{args.wrk_connections} -d{args.duration}s.",
    ]
    if any("rps" in r for r in results):
        lines += [
            "",
            "| redirects | answers/s | p99 ms | daemon CPU µs per redirect | CPUs busy before |",
            "|---|---:|---:|---:|---:|",
        ]
    for r in results:
        if "rps" in r:
            lines.append(
                f"| {r['what'][11:]} | {r['rps']:.0f} | {r['p99_ms']:.2f} | "
                f"{r['cpu_us']:.1f} | {r['load']} |"
            )
    if any("mbps" in r for r in results):
        lines += [
            "",
            "| upload | MB/s | daemon CPU s/GiB | peak RSS MiB | seconds | CPUs busy before |",
            "|---|---:|---:|---:|---:|---:|",
        ]
    for r in results:
        if "mbps" in r:
            lines.append(
                f"| {r['what'][8:]} | {r['mbps']:.0f} | {r['cpu_s_gib']:.2f} | {r['rss']:.0f} | "
                f"{r['seconds']:.1f} | {r['load']} |"
            )
    starts = [r for r in results if "ready" in r]
    if starts:
        lines += [
            "",
            "| start-up (median of N) | N | listening after s | first full listing s "
            "| RSS listening MiB | RSS at 0 versions MiB | RSS per version bytes "
            "| CPUs busy before |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in starts:
            lines.append(
                f"| {r['what'][10:]} | {r['reps']} | {r['ready']:.2f} | {r['listed']:.2f} | "
                f"{r['rss']:.1f} | {r['rss0']:.1f} | {r['per_version']:,.0f} | {r['load']} |"
            )
    lines += ["", "Checks:", ""] + [f"- {c}" for c in checks] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)
