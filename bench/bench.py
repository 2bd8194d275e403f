#!/usr/bin/env python3
"""Benchmark aar against Debian's docker-registry (CNCF distribution 2.8).

Run through bench/run.sh, which installs the tools, makes the work directory
and cleans up after this script. Python 3.11 standard library only; every
network request goes to 127.0.0.1 over TLS 1.3 with TLS_AES_128_GCM_SHA256
and a client certificate.

Long on purpose: it is the whole benchmark, scenarios and report; what both
benchmarks share is in benchlib.py.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (
    CIPHER,
    CLK_TCK,
    GIB,
    LIVE,
    MIB,
    BenchError,
    Tls,
    cpu_seconds,
    free_port,
    kill_all,
    log,
    parse_wrk,
    popen,
    proc_status_kib,
    random_file,
    reap,
    run,
    stop,
    system_busy_ticks,
    wait_quiet,
    wrk,
)

APP = "bench"  # aar application name and docker-registry repository name
ARCH = "amd64"
HERE = Path(__file__).resolve().parent
LABELS = {"aar": "aar", "registry": "docker-registry"}

# Peer figures measured earlier on this kind of machine (for orientation only).
REFERENCE = {
    "upload_mbps": 288.0,
    "upload_cpu": 3.5,
    "download1_mbps": 801.0,
    "download1_cpu": 1.2,
    "meta_rps": 2400.0,
    "meta_p99_ms": 250.0,
    "rss_mib": 230e6 / MIB,
}


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Meter:
    """Measures one timed section: server CPU, wall time, and CPU used by strangers.

    `foreign` is the share of the machine's CPU (all cores) used during the section
    by processes other than the measured server and this benchmark's own clients:
    the noise from other work on a shared machine.
    """

    def __init__(self, srv: Server, settle: float = 0.3):
        self.srv, self.settle = srv, settle

    def __enter__(self):
        self.sys0 = system_busy_ticks()[0]
        self.kids0 = children_cpu()
        self.self0 = time.process_time()
        self.cpu0 = self.srv.cpu()
        self.t0 = time.monotonic()
        return self

    def __exit__(self, exc_type, *_):
        self.wall = time.monotonic() - self.t0
        if exc_type:
            return False
        time.sleep(self.settle)
        self.cpu = self.srv.cpu() - self.cpu0
        span = time.monotonic() - self.t0
        busy = (system_busy_ticks()[0] - self.sys0) / CLK_TCK
        ours = self.cpu + children_cpu() - self.kids0 + time.process_time() - self.self0
        self.foreign = max(0.0, busy - ours) / (span * len(os.sched_getaffinity(0)))
        self.srv.bench.foreign.append(self.foreign)
        return False


# --------------------------------------------------------------------------- TLS material


def fingerprint_pem(pem: str) -> str:
    der = run(["openssl", "x509", "-outform", "DER"], stdin_data=pem.encode()).stdout
    return hashlib.sha256(der).hexdigest()


# --------------------------------------------------------------------------- curl


class Resp:
    def __init__(self, status, headers, body, time_total, size_down, size_up, cmd):
        self.status, self.headers, self.body = status, headers, body
        self.time_total, self.size_down, self.size_up = time_total, size_down, size_up
        self.cmd = cmd

    def json(self):
        return json.loads(self.body)

    def describe(self) -> str:
        hdrs = "".join(f"  {k}: {v}\n" for k, v in self.headers.items())
        body = self.body[:1500].decode(errors="replace") if self.body else ""
        return f"request: {self.cmd}\nresponse: HTTP {self.status}\n{hdrs}  body: {body}"


class Client:
    """curl with the benchmark's TLS settings (HTTP/1.1, TLS 1.3, one AEAD, client cert)."""

    def __init__(self, tls: Tls, work: Path, cacert: Path | None):
        self.tls, self.work, self.cacert = tls, work, cacert

    def base_args(self, cert=True) -> list[str]:
        a = [
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "--http1.1",
            "--tlsv1.3",
            "--tls13-ciphers",
            CIPHER,
            "-H",
            "Expect:",
        ]
        a += ["--cacert", str(self.cacert)] if self.cacert else ["-k"]
        if cert:
            a += ["--cert", str(self.tls.client_crt), "--key", str(self.tls.client_key)]
        return a

    def request(
        self, method, url, *, headers=(), upload=None, data=None, out=None, cert=True, timeout=900
    ) -> Resp:
        hdr = self.work / "curl.headers"
        body = self.work / "curl.body"
        cmd = [
            *self.base_args(cert),
            "-X",
            method,
            "-D",
            str(hdr),
            "-o",
            str(out or body),
            "--max-time",
            str(timeout),
            "-w",
            "%{http_code} %{time_total} %{size_download} %{size_upload} %{size_header}",
        ]
        for h in headers:
            cmd += ["-H", h]
        if method == "HEAD":
            cmd[cmd.index("-X")] = "-I"  # curl -X HEAD would wait for a body
            cmd.remove("HEAD")
        if upload is not None:
            cmd += ["-T", str(upload)]
        elif data is not None:
            cmd += ["--data-binary", data]
            if not any(h.lower().startswith("content-type:") for h in headers):
                cmd += ["-H", "Content-Type:"]
        cmd.append(url)
        shown = (
            f"{method} {url}"
            + "".join(f" [{h}]" for h in headers)
            + (f" body=@{upload}" if upload else (f" body={data[:200]!r}" if data else ""))
        )
        cp = run(cmd, timeout=timeout + 30, check=False)
        if cp.returncode != 0:
            raise BenchError(
                f"curl exit {cp.returncode} for {shown}: {cp.stderr.decode(errors='replace')}"
            )
        code, t, down, up, hsize = cp.stdout.decode().split()
        headers_out: dict[str, str] = {}
        for line in hdr.read_text(errors="replace").splitlines():
            if line.startswith("HTTP/"):
                headers_out = {}  # keep only the final response's headers
            elif ":" in line:
                k, v = line.split(":", 1)
                headers_out[k.strip().lower()] = v.strip()
        b = body.read_bytes() if out is None else b""
        r = Resp(int(code), headers_out, b, float(t), int(down), int(up), shown)
        r.size_header = int(hsize)
        return r


def expect(r: Resp, *codes: int) -> Resp:
    if r.status not in codes:
        raise BenchError(f"expected HTTP {codes}, got {r.status}\n{r.describe()}")
    return r


# --------------------------------------------------------------------------- servers


class Server:
    kind = ""
    label = ""

    def __init__(self, bench: Bench, tag: str):
        self.bench = bench
        self.tls = bench.tls
        self.dir = bench.work / f"{self.kind}-{tag}"
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.client: Client | None = None
        self.version = ""
        self.notes: list[str] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def hwm_kib(self) -> int:
        return proc_status_kib(self.pid, "VmHWM")

    def alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise BenchError(
                f"{self.label} exited (status {self.proc and self.proc.returncode}); "
                f"see {self.dir}/*.log:\n{self.log_tail()}"
            )

    def log_tail(self) -> str:
        out = []
        for f in sorted(self.dir.glob("*.log")):
            out.append(f"--- {f.name}\n" + f.read_text(errors="replace")[-1500:])
        return "\n".join(out)

    def stop(self) -> None:
        stop(self.proc)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def req(self, method, path, **kw) -> Resp:
        url = path if path.startswith("https://") else self.base + path
        return self.client.request(method, url, **kw)

    def tls_check(self, path: str) -> dict:
        """openssl s_client with the s_time flags: the cert is presented and accepted."""
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nConnection: close\r\n\r\n"
        )
        cp = run(
            [
                "openssl",
                "s_client",
                "-brief",
                "-ign_eof",
                "-connect",
                f"127.0.0.1:{self.port}",
                "-tls1_3",
                "-ciphersuites",
                CIPHER,
                "-cert",
                self.tls.client_crt,
                "-key",
                self.tls.client_key,
                "-servername",
                "localhost",
            ],
            stdin_data=request.encode(),
            timeout=30,
            check=False,
        )
        out, err = cp.stdout.decode(errors="replace"), cp.stderr.decode(errors="replace")
        status = re.search(r"^HTTP/1\.[01] (\d{3})", out, re.M)
        info = {
            k: (re.search(rf"^{k}: (.*)$", err, re.M) or [None, "?"])[1]
            for k in ("Protocol version", "Ciphersuite", "Signature type", "Server Temp Key")
        }
        if not status or status.group(1) != "200":
            raise BenchError(
                f"{self.label}: openssl s_client with the client certificate did not get "
                f"200 for GET {path}:\n{out[:800]}\n{err[-800:]}"
            )
        if info["Ciphersuite"] != CIPHER or info["Protocol version"] != "TLSv1.3":
            raise BenchError(f"{self.label}: negotiated {info}, wanted TLSv1.3 {CIPHER}")
        return info


class Aar(Server):
    kind = "aar"
    label = "aar"
    READY = re.compile(
        r"^aar (\S+) serving https://127\.0\.0\.1:(\d+) \(storage fs, server fingerprint "
        r"([0-9a-f]{64})\)\s*$"
    )

    def start(self) -> None:
        b = self.bench.aar_bin
        cfg = self.dir / "aar.yaml"
        cfg.write_text(
            f'http: {{addr: 127.0.0.1:{self.port}, tls: {{min-version: "1.3"}}}}\n'
            f"state-directory: {self.dir}/state\n"
            f"storage: {{fs: {{root-directory: {self.dir}/data}}}}\n"
        )
        run([b, "trust", "add", "--config", cfg, self.tls.client_crt, "--publisher"], timeout=60)
        with (
            open(self.dir / "stdout.log", "wb") as out,
            open(self.dir / "stderr.log", "wb") as err,
        ):
            self.proc = popen(
                [b, "serve", "--config", cfg],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        m = None
        while time.monotonic() < deadline:
            self.alive()
            for line in (self.dir / "stdout.log").read_text(errors="replace").splitlines():
                m = self.READY.match(line)
                if m:
                    break
            if m:
                break
            time.sleep(0.05)
        if not m:
            raise BenchError(f"aar printed no ready line within 60 s:\n{self.log_tail()}")
        self.version, port, fp = m.group(1), int(m.group(2)), m.group(3)
        if port != self.port:
            raise BenchError(f"aar serves on port {port}, configured {self.port}")
        # Fetch the server certificate and pin it (checked against the printed fingerprint).
        cp = run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.port}", "-showcerts"],
            stdin_data=b"",
            timeout=30,
            check=False,
        )
        pem = re.search(
            r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
            cp.stdout.decode(errors="replace"),
            re.S,
        )
        if not pem:
            raise BenchError(
                f"could not read aar's server certificate:\n{cp.stderr.decode()[-800:]}"
            )
        if fingerprint_pem(pem.group(0)) != fp:
            raise BenchError("aar's certificate does not match the fingerprint it printed")
        crt = self.dir / "server.crt"
        crt.write_text(pem.group(0) + "\n")
        self.client = Client(self.tls, self.dir, crt)
        try:
            r = self.req("GET", "/1.0")
        except BenchError as e:
            # Pinning through --cacert failed (e.g. unusual certificate); fall back to -k,
            # the fingerprint having been checked above.
            self.notes.append(
                f"curl --cacert with aar's certificate failed ({str(e)[:120]}); used -k "
                "after checking the fingerprint"
            )
            self.client = Client(self.tls, self.dir, None)
            r = self.req("GET", "/1.0")
        meta = expect(r, 200).json().get("metadata", {})
        if meta.get("auth") != "trusted" or meta.get("role") != "publisher":
            raise BenchError(
                f"the client certificate is not seen as a trusted publisher:\n{r.describe()}"
            )

    def upload(self, path: Path, digest: str, size: int) -> float:
        r1 = expect(
            self.req(
                "POST",
                "/1.0/uploads",
                data="",
                headers=[f"X-AAR-Digest: {digest}", f"X-AAR-Size: {size}"],
            ),
            201,
        )
        loc = r1.headers.get("location")
        if not loc:
            raise BenchError(f"no Location header:\n{r1.describe()}")
        r2 = expect(
            self.req(
                "PATCH",
                loc,
                upload=path,
                headers=["Upload-Offset: 0", "Content-Type: application/octet-stream"],
            ),
            200,
            201,
        )
        m = r2.json().get("metadata") or {}
        if m.get("complete") is not True or m.get("offset") != size:
            raise BenchError(f"upload not complete after the PATCH:\n{r2.describe()}")
        if r2.size_up != size:
            raise BenchError(f"curl sent {r2.size_up} bytes, expected {size}")
        return r1.time_total + r2.time_total

    def publish(self, digest: str, size: int) -> None:
        manifest = (
            f"name: {APP}\ninstance-type: a2.3\nboot-package: com.example.bench\ntags: [bench]\n"
        )
        body = json.dumps({"manifest": manifest, "images": {ARCH: digest}})
        r = expect(
            self.req(
                "POST",
                f"/1.0/applications/{APP}/versions",
                data=body,
                headers=["Content-Type: application/json"],
            ),
            201,
        )
        v = r.json()["metadata"]["version"]
        self.download_path = f"/1.0/applications/{APP}/versions/{v}/images/{ARCH}"
        self.meta_path = f"/1.0/applications/{APP}"
        expect(self.req("GET", self.meta_path), 200)
        h = expect(self.req("HEAD", self.download_path, headers=[]), 200)
        if h.headers.get("content-length") != str(size):
            raise BenchError(f"image Content-Length is not {size}:\n{h.describe()}")

    def unauthenticated_check(self) -> str:
        r = self.client.request("GET", self.base + self.meta_path, cert=False)
        return f"curl without a client certificate: HTTP {r.status}"


class Registry(Server):
    kind = "registry"
    label = "docker-registry"

    def start(self) -> None:
        cfg = self.dir / "config.yml"
        (self.dir / "data").mkdir()
        cfg.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.dir}/data\n"
            "  cache:\n    blobdescriptor: inmemory\n"
            "  delete:\n    enabled: true\n"
            "http:\n"
            f"  addr: 127.0.0.1:{self.port}\n"
            "  tls:\n"
            f"    certificate: {self.tls.peer_crt}\n"
            f"    key: {self.tls.peer_key}\n"
            f"    clientcas:\n      - {self.tls.client_crt}\n"
            "    minimumtls: tls1.3\n"
        )
        with open(self.dir / "registry.log", "wb") as log_f:
            self.proc = popen(
                ["docker-registry", "serve", cfg],
                stdout=log_f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.client = Client(self.tls, self.dir, self.tls.peer_crt)
        deadline = time.monotonic() + 60
        while True:
            self.alive()
            try:
                if self.req("GET", "/v2/", timeout=5).status == 200:
                    break
            except BenchError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"docker-registry not ready within 60 s:\n{self.log_tail()}")
            time.sleep(0.1)
        self.version = self.bench.versions.get("docker-registry", "")

    def blob_upload(self, path: Path | None, data: str | None, digest: str) -> float:
        r1 = expect(self.req("POST", f"/v2/{APP}/blobs/uploads/", data=""), 202)
        loc = r1.headers["location"]
        loc += ("&" if "?" in loc else "?") + f"digest={digest}"
        r2 = expect(
            self.req(
                "PUT",
                loc,
                upload=path,
                data=data,
                headers=["Content-Type: application/octet-stream"],
            ),
            201,
        )
        if r2.headers.get("docker-content-digest") != digest:
            raise BenchError(f"registry stored another digest:\n{r2.describe()}")
        return r1.time_total + r2.time_total

    def upload(self, path: Path, digest: str, size: int) -> float:
        return self.blob_upload(path, None, digest)

    def publish(self, digest: str, size: int) -> None:
        config = json.dumps(
            {"architecture": ARCH, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}},
            separators=(",", ":"),
        )
        cdigest = "sha256:" + hashlib.sha256(config.encode()).hexdigest()
        self.blob_upload(None, config, cdigest)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": len(config),
                    "digest": cdigest,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": size,
                        "digest": digest,
                    }
                ],
            },
            separators=(",", ":"),
        )
        expect(
            self.req(
                "PUT",
                f"/v2/{APP}/manifests/latest",
                data=manifest,
                headers=["Content-Type: application/vnd.docker.distribution.manifest.v2+json"],
            ),
            201,
        )
        self.download_path = f"/v2/{APP}/blobs/{digest}"
        self.meta_path = f"/v2/{APP}/tags/list"
        expect(self.req("GET", self.meta_path), 200)

    def unauthenticated_check(self) -> str:
        try:
            r = self.client.request("GET", self.base + self.meta_path, cert=False)
            return f"curl without a client certificate: HTTP {r.status}"
        except BenchError as e:
            return (
                "curl without a client certificate: refused during the TLS handshake ("
                + str(e).strip().splitlines()[-1][-90:]
                + ")"
            )


# --------------------------------------------------------------------------- benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.tls = Tls(self.work, HERE)
        self.aar_bin = args.aar
        self.kinds = {"both": ["aar", "registry"], "aar": ["aar"], "peer": ["registry"]}[args.only]
        self.samples: dict[str, dict[str, list[float]]] = {k: {} for k in ("aar", "registry")}
        self.final: dict[str, Server] = {}
        self.all_hwm: dict[str, list[int]] = {"aar": [], "registry": []}
        self.checks: list[str] = []
        self.tls_info: dict[str, dict] = {}
        self.versions: dict[str, str] = {}
        self.size = args.size
        self.foreign: list[float] = []  # per timed section, see Meter
        self.waited_busy = 0

    def quiet(self) -> None:
        if wait_quiet(self.args.quiet_wait) >= 0.25:
            self.waited_busy += 1

    def add(self, kind, metric, value) -> None:
        self.samples[kind].setdefault(metric, []).append(value)

    def order(self, rep: int) -> list[str]:
        return self.kinds if rep % 2 == 0 else list(reversed(self.kinds))

    def new_server(self, kind, tag) -> Server:
        s = (Aar if kind == "aar" else Registry)(self, tag)
        s.start()
        return s

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        log(f"work directory {self.work}")
        if "aar" in self.kinds:
            # Snapshot the binary: target/release/aar may be rebuilt while the benchmark runs.
            src = Path(self.aar_bin)
            if not os.access(src, os.X_OK):
                raise BenchError(
                    f"no aar binary at {src}: run `cargo build --release -p aar` or pass --aar"
                )
            snap = self.work / "aar"
            shutil.copy2(src, snap)
            mtime = datetime.datetime.fromtimestamp(src.stat().st_mtime, datetime.timezone.utc)
            sha = hashlib.sha256(snap.read_bytes()).hexdigest()[:12]
            self.aar_origin = f"`{src}` built {mtime:%Y-%m-%d %H:%M:%S} UTC, sha256 {sha}…"
            cp = run(["git", "-C", str(HERE.parent), "log", "-1", "--format=%h %s"], check=False)
            if cp.returncode == 0:
                dirty = run(
                    ["git", "-C", str(HERE.parent), "status", "--porcelain", "--", "daemon"],
                    check=False,
                ).stdout.strip()
                self.aar_origin += f"; source tree at commit {cp.stdout.decode().strip()}" + (
                    " plus uncommitted changes" if dirty else ""
                )
            self.aar_bin = str(snap)
        self.collect_versions()
        self.tls.make()
        self.check_wrk_cipher_forcing()
        self.blob = self.work / "blob.bin"
        log(f"writing {self.size} random bytes to {self.blob}")
        self.digest = random_file(self.blob, self.size)
        os.sync()

    def collect_versions(self) -> None:
        v = self.versions
        for pkg in ("docker-registry", "wrk", "curl", "openssl"):
            cp = run(["dpkg-query", "-W", "-f=${Version}", pkg], check=False)
            v[pkg] = cp.stdout.decode().strip() or "?"
        cp = run(["docker-registry", "--version"], check=False)
        v["docker-registry"] = cp.stdout.decode().strip() or v["docker-registry"]
        v["openssl"] = run(["openssl", "version"]).stdout.decode().strip()
        v["curl"] = " ".join(run(["curl", "--version"]).stdout.decode().split()[:2])
        if "aar" in self.kinds:
            cp = run([self.aar_bin, "--version"], check=False)
            v["aar"] = (
                (cp.stdout or cp.stderr).decode().strip().splitlines()[0]
                if cp.returncode == 0
                else "?"
            )

    def check_wrk_cipher_forcing(self) -> None:
        """wrk with our OPENSSL_CONF must not offer any TLS 1.3 suite but CIPHER."""
        port = free_port()
        logf = self.work / "s_server.log"
        with open(logf, "wb") as f:
            srv = popen(
                [
                    "openssl",
                    "s_server",
                    "-accept",
                    f"127.0.0.1:{port}",
                    "-cert",
                    self.tls.peer_crt,
                    "-key",
                    self.tls.peer_key,
                    "-tls1_3",
                    "-ciphersuites",
                    "TLS_AES_256_GCM_SHA384",
                    "-www",
                ],
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            time.sleep(0.5)
            cp = run(
                [
                    "wrk",
                    "-t1",
                    "-c1",
                    "-d1s",
                    "-s",
                    HERE / "wrk_report.lua",
                    f"https://127.0.0.1:{port}/",
                ],
                env=self.tls.wrk_env(),
                timeout=30,
                check=False,
            )
            res = parse_wrk(cp.stdout.decode())
        finally:
            srv.terminate()
            reap(srv, 10)
        text = logf.read_text(errors="replace")
        if res["requests"] != 0 or "no shared cipher" not in text:
            raise BenchError(
                "wrk's cipher suite could not be restricted through OPENSSL_CONF "
                f"(requests={res['requests']}; s_server log: {text[-400:]})"
            )
        self.checks.append(
            f"wrk offers only {CIPHER}: against an `openssl s_server` limited to "
            'TLS_AES_256_GCM_SHA384 every handshake fails with "no shared cipher"'
        )

    # ------------------------------------------------------------------ phases
    def phase_upload(self) -> None:
        reps = self.args.reps
        for rep in range(reps):
            for kind in self.order(rep):
                srv = self.new_server(kind, f"r{rep + 1}")
                os.sync()
                self.quiet()
                with Meter(srv, settle=0.5) as m:
                    secs = srv.upload(self.blob, self.digest, self.size)
                cpu = m.cpu
                srv.alive()
                mbps = self.size / secs / 1e6
                cpu_gib = cpu / (self.size / GIB)
                self.add(kind, "upload_mbps", mbps)
                self.add(kind, "upload_cpu", cpu_gib)
                log(
                    f"upload   rep {rep + 1}/{reps} {srv.label:16} {mbps:8.1f} MB/s  "
                    f"{cpu_gib:5.2f} CPU s/GiB"
                )
                self.all_hwm[kind].append(srv.hwm_kib())
                if rep == reps - 1:
                    self.final[kind] = srv
                else:
                    srv.remove()

    def prepare_downloads(self) -> None:
        for kind in self.kinds:
            srv = self.final[kind]
            srv.publish(self.digest, self.size)
            # Untimed integrity check (and warm-up): the bytes served hash to the digest.
            cmd = [*srv.client.base_args(), "-o", "-", srv.base + srv.download_path]
            p = popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            h, n = hashlib.sha256(), 0
            while chunk := p.stdout.read(4 * MIB):
                h.update(chunk)
                n += len(chunk)
            err = p.stderr.read()
            reap(p, 60)
            if p.returncode != 0 or n != self.size or "sha256:" + h.hexdigest() != self.digest:
                raise BenchError(
                    f"{srv.label}: GET {srv.download_path} returned {n} bytes, "
                    f"curl exit {p.returncode}, sha256 {h.hexdigest()}: {err.decode()[-300:]}"
                )
            self.checks.append(
                f"{srv.label}: `GET {srv.download_path}` returns the {self.size} uploaded "
                "bytes (sha256 checked)"
            )
            self.checks.append(
                f"{srv.label}: {srv.unauthenticated_check()} "
                f"(`GET {srv.meta_path}`); with the certificate: HTTP 200"
            )

    def phase_download(self) -> None:
        reps = self.args.reps
        for rep in range(reps):
            for kind in self.order(rep):
                srv = self.final[kind]
                self.quiet()
                with Meter(srv) as m:
                    r = expect(srv.req("GET", srv.download_path, out="/dev/null"), 200)
                cpu = m.cpu
                if r.size_down != self.size:
                    raise BenchError(
                        f"{srv.label}: downloaded {r.size_down} bytes, expected {self.size}"
                    )
                mbps = self.size / r.time_total / 1e6
                cpu_gib = cpu / (self.size / GIB)
                self.add(kind, "download1_mbps", mbps)
                self.add(kind, "download1_cpu", cpu_gib)
                log(
                    f"download rep {rep + 1}/{reps} {srv.label:16} {mbps:8.1f} MB/s  "
                    f"{cpu_gib:5.2f} CPU s/GiB"
                )
        for rep in range(reps):
            for kind in self.order(rep):
                srv = self.final[kind]
                cmd = [
                    *srv.client.base_args(),
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{size_download}",
                    srv.base + srv.download_path,
                ]
                self.quiet()
                with Meter(srv) as m:
                    procs = [
                        popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                        for _ in range(self.args.parallel)
                    ]
                    outs = []
                    for p in procs:
                        out, err = p.communicate(timeout=900)
                        LIVE.pop(p.pid, None)
                        outs.append((p.returncode, out.decode(), err.decode()))
                wall, cpu = m.wall, m.cpu
                for rc, out, err in outs:
                    if rc != 0 or out.split() != ["200", str(self.size)]:
                        raise BenchError(
                            f"{srv.label}: parallel download failed: rc={rc} {out} {err}"
                        )
                total = self.size * self.args.parallel
                mbps = total / wall / 1e6
                cpu_gib = cpu / (total / GIB)
                self.add(kind, "downloadN_mbps", mbps)
                self.add(kind, "downloadN_cpu", cpu_gib)
                log(
                    f"download x{self.args.parallel} rep {rep + 1}/{reps} {srv.label:16} "
                    f"{mbps:8.1f} MB/s  "
                    f"{cpu_gib:5.2f} CPU s/GiB"
                )

    def wrk(self, srv: Server, duration: int, with_cert=True) -> dict:
        return wrk(
            self.tls,
            srv.base + srv.meta_path,
            threads=self.args.wrk_threads,
            connections=self.args.wrk_connections,
            duration=duration,
            with_cert=with_cert,
        )

    def phase_metadata(self) -> None:
        for kind in self.kinds:
            srv = self.final[kind]
            neg = self.wrk(srv, 1, with_cert=False)
            if kind == "aar":
                ok = neg["requests"] > 0 and neg["status"] == neg["requests"]
                what = f"{neg['requests']:.0f} requests, {neg['status']:.0f} answered >= 400 (403)"
            else:
                ok = neg["requests"] == 0 and (neg["read"] + neg["connect"] + neg["write"]) > 0
                what = f"{neg['requests']:.0f} requests completed, handshakes refused"
            self.checks.append(
                f"{srv.label}: wrk WITHOUT the shim (no client certificate), 1 s: {what}"
                + ("" if ok else " — UNEXPECTED")
            )
            ref = expect(srv.req("GET", srv.meta_path), 200)
            srv.meta_bytes = ref.size_header + ref.size_down
            warm = self.wrk(srv, 2)
            self.check_wrk(srv, warm)
        reps = self.args.reps
        for rep in range(reps):
            for kind in self.order(rep):
                srv = self.final[kind]
                self.quiet()
                with Meter(srv) as m:
                    res = self.wrk(srv, self.args.duration)
                cpu = m.cpu
                self.check_wrk(srv, res)
                rps = res["requests"] / (res["duration_us"] / 1e6)
                p99 = res["p99_us"] / 1000
                self.add(kind, "meta_rps", rps)
                self.add(kind, "meta_p99_ms", p99)
                self.add(kind, "meta_cpu_us", cpu / res["requests"] * 1e6)
                log(
                    f"metadata rep {rep + 1}/{reps} {srv.label:16} {rps:8.0f} req/s  "
                    f"p99 {p99:7.2f} ms"
                )
        self.checks.append(
            "wrk WITH the shim: every metadata run had 0 responses >= 400, 0 socket errors, "
            "and responses of the size of the 200 that curl gets"
        )

    def check_wrk(self, srv: Server, res: dict) -> None:
        bad = res["status"] + res["connect"] + res["read"] + res["write"] + res["timeout"]
        # Every response must look like the 200 that curl got (size within a few %):
        # wrk counts only statuses >= 400 as errors.
        per = res["bytes"] / res["requests"] if res["requests"] else 0
        if not 0.9 < per / srv.meta_bytes < 1.1:
            raise BenchError(
                f"{srv.label}: wrk's responses average {per:.0f} bytes, but the 200 "
                f"response to GET {srv.meta_path} has {srv.meta_bytes}"
            )
        if res["requests"] == 0 or bad:
            counts = {k: v for k, v in res.items() if k != "text"}
            raise BenchError(
                f"{srv.label}: wrk with the client certificate saw errors: {counts}\n{res['text']}"
            )

    def phase_handshakes(self) -> None:
        for kind in self.kinds:
            srv = self.final[kind]
            self.tls_info[kind] = srv.tls_check(srv.meta_path)
        reps = self.args.reps
        for rep in range(reps):
            for kind in self.order(rep):
                srv = self.final[kind]
                out = self.work / "s_time.out"
                cmd = [
                    "openssl",
                    "s_time",
                    "-new",
                    "-connect",
                    f"127.0.0.1:{srv.port}",
                    "-tls1_3",
                    "-ciphersuites",
                    CIPHER,
                    "-cert",
                    str(self.tls.client_crt),
                    "-key",
                    str(self.tls.client_key),
                    "-time",
                    str(self.args.duration),
                ]
                self.quiet()
                with Meter(srv) as m, open(out, "wb") as f:
                    p = popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                    reap(p, self.args.duration + 60)
                wall, cpu = m.wall, m.cpu
                text = out.read_text(errors="replace")
                m = re.search(r"(\d+) connections in [\d.]+s;", text)
                if p.returncode != 0 or not m or int(m.group(1)) == 0:
                    raise BenchError(
                        f"{srv.label}: openssl s_time failed (rc {p.returncode}): "
                        f"{text.replace('*', '')[-600:]}"
                    )
                n = int(m.group(1))
                self.add(kind, "hs_rate", n / wall)
                self.add(kind, "hs_cpu_ms", cpu / n * 1000)
                log(f"handshake rep {rep + 1}/{reps} {srv.label:16} {n / wall:8.0f} conn/s")
                srv.alive()

    def phase_rss(self) -> None:
        for kind in self.kinds:
            srv = self.final[kind]
            self.add(kind, "rss_mib", srv.hwm_kib() / 1024)
            self.all_hwm[kind].append(srv.hwm_kib())

    def run(self) -> str:
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.load_before = os.getloadavg()
        self.setup()
        self.phase_upload()
        self.prepare_downloads()
        self.phase_download()
        self.phase_metadata()
        self.phase_handshakes()
        self.phase_rss()
        self.load_after = os.getloadavg()
        self.finished = datetime.datetime.now(datetime.timezone.utc)
        return self.report()

    # ------------------------------------------------------------------ report
    def report(self) -> str:
        a = self.args
        sz = "1 GiB" if self.size == GIB else f"{self.size / MIB:g} MiB"
        rows = [
            # key, label, fmt, reference, target text, target check (ratio, aar value) -> bool
            (
                "upload_mbps",
                f"{sz} upload: throughput (MB/s)",
                "{:.0f}",
                "upload_mbps",
                "≥ 2× peer",
                lambda r, v: r >= 2,
            ),
            ("upload_cpu", f"{sz} upload: server CPU (s/GiB)", "{:.2f}", "upload_cpu", "", None),
            (
                "download1_mbps",
                f"{sz} download, 1 client: throughput (MB/s)",
                "{:.0f}",
                "download1_mbps",
                "≥ peer",
                lambda r, v: r >= 1,
            ),
            (
                "download1_cpu",
                f"{sz} download, 1 client: server CPU (s/GiB)",
                "{:.2f}",
                "download1_cpu",
                "≤ ½ peer",
                lambda r, v: r <= 0.5,
            ),
            (
                "downloadN_mbps",
                f"{sz} download, {a.parallel} clients: aggregate throughput (MB/s)",
                "{:.0f}",
                None,
                "≥ peer",
                lambda r, v: r >= 1,
            ),
            (
                "downloadN_cpu",
                f"{sz} download, {a.parallel} clients: server CPU (s/GiB)",
                "{:.2f}",
                None,
                "≤ ½ peer",
                lambda r, v: r <= 0.5,
            ),
            (
                "meta_rps",
                "metadata GET: requests/s",
                "{:,.0f}",
                "meta_rps",
                "≥ 10× peer",
                lambda r, v: r >= 10,
            ),
            (
                "meta_p99_ms",
                "metadata GET: p99 latency (ms)",
                "{:.2f}",
                "meta_p99_ms",
                "< 10 ms",
                lambda r, v: v < 10,
            ),
            ("meta_cpu_us", "metadata GET: server CPU per request (µs)", "{:.0f}", None, "", None),
            (
                "hs_rate",
                "full TLS 1.3 handshakes with client cert: connections/s",
                "{:,.0f}",
                None,
                "≥ peer",
                lambda r, v: r >= 1,
            ),
            (
                "hs_cpu_ms",
                "full handshakes: server CPU per handshake (ms)",
                "{:.2f}",
                None,
                "",
                None,
            ),
            (
                "rss_mib",
                "peak RSS after everything, VmHWM (MiB)",
                "{:.1f}",
                "rss_mib",
                "< 64 MiB",
                lambda r, v: v < 64,
            ),
        ]
        size_txt = "1 GiB" if self.size == GIB else f"{self.size} bytes"
        lines = []
        lines.append("# aar vs docker-registry benchmark\n")
        lines.append(
            f"- date: {self.started:%Y-%m-%d %H:%M:%S} UTC (finished {self.finished:%H:%M:%S} UTC)"
        )
        lines.append(f"- machine: {machine()}")
        lines.append(
            f"- load average before / after: {fmt_load(self.load_before)} / "
            f"{fmt_load(self.load_after)}"
        )
        if self.foreign:
            lines.append(
                "- CPU used by other processes during the timed runs (share of all cores): "
                f"median "
                f"{statistics.median(self.foreign):.0%}, max {max(self.foreign):.0%}; "
                f"{self.waited_busy} of {len(self.foreign)} runs started after "
                f"{a.quiet_wait:.0f} s of waiting for the machine to calm down"
            )
        vers = self.versions
        lines.append(
            f"- aar: {vers.get('aar', '—')} ({self.aar_origin})"
            if "aar" in self.kinds
            else "- aar: not run"
        )
        lines.append(
            f"- peer: {vers['docker-registry']} (Debian package `docker-registry` "
            f"{run(['dpkg-query', '-W', '-f=${Version}', 'docker-registry']).stdout.decode()})"
        )
        lines.append(f"- clients: {vers['curl']}; {vers['openssl']}; wrk {vers['wrk']}")
        lines.append(f"- command: `{a.command}`")
        lines.append(
            f"- medians of {a.reps} repetitions; test file {size_txt} of random bytes; "
            f"MB = 10^6 bytes; wrk -t{a.wrk_threads} -c{a.wrk_connections} -d{a.duration}s; "
            f"s_time -new -time {a.duration}"
        )
        tls = "; ".join(
            f"{LABELS[k]}: {v['Protocol version']} "
            f"{v['Ciphersuite']}, server signature {v['Signature type']}, "
            f"group {v['Server Temp Key']}"
            for k, v in self.tls_info.items()
        )
        lines.append(f"- TLS as negotiated (openssl s_client with the benchmark's flags): {tls}")
        lines.append("")
        lines.append(
            "| measure | aar | docker-registry | aar/peer | target (aar) | met "
            "| peer, earlier reference |"
        )
        lines.append("|---|---:|---:|---:|---|---|---:|")
        for key, label, fmt, ref, target, check in rows:
            va = med(self.samples["aar"].get(key))
            vp = med(self.samples["registry"].get(key))
            ratio = va / vp if va is not None and vp else None
            met = ""
            if check and va is not None and (ratio is not None or target.startswith("<")):
                met = "yes" if check(ratio if ratio is not None else 0, va) else "**no**"
            lines.append(
                f"| {label} | {fmtv(fmt, va)} | {fmtv(fmt, vp)} | "
                f"{'—' if ratio is None else f'{ratio:.2f}×'} | {target} | {met} | "
                f"{fmtv(fmt, REFERENCE[ref]) if ref else ''} |"
            )
        lines.append("")
        lines.append("## Samples (in run order)\n")
        for key, label, fmt, *_ in rows:
            for kind, name in LABELS.items():
                vals = self.samples[kind].get(key)
                if vals:
                    lines.append(f"- {label}, {name}: " + ", ".join(fmtv(fmt, v) for v in vals))
        for kind, name in LABELS.items():
            if self.all_hwm[kind]:
                lines.append(
                    f"- VmHWM of every {name} process (MiB; upload-only instances, then the "
                    "long-lived one): " + ", ".join(f"{k / 1024:.1f}" for k in self.all_hwm[kind])
                )
        lines.append("")
        lines.append("## Checks\n")
        lines += [f"- {c}" for c in self.checks]
        notes = [n for k in self.kinds for n in self.final[k].notes]
        if notes:
            lines.append("")
            lines.append("## Notes\n")
            lines += [f"- {n}" for n in notes]
        return "\n".join(lines) + "\n"


def med(vals):
    return statistics.median(vals) if vals else None


def fmtv(fmt, v):
    return "—" if v is None else fmt.format(v)


def fmt_load(loads):
    return " ".join(f"{x:.2f}" for x in loads)


def machine() -> str:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = proc_mem_gib()
    return (
        f"nproc {len(os.sched_getaffinity(0))}, {model}, {mem:.0f} GiB RAM, "
        f"Linux {os.uname().release}"
    )


def proc_mem_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / (1 << 20)
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--aar", default=str(HERE.parent / "target" / "release" / "aar"))
    ap.add_argument("--only", choices=["both", "aar", "peer"], default="both")
    ap.add_argument(
        "--size", type=int, default=GIB, help="test file size in bytes (default 1 GiB)"
    )
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk and s_time run")
    ap.add_argument("--parallel", type=int, default=4, help="clients in the parallel download")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk-connections", type=int, default=32)
    ap.add_argument("--workdir", required=True)
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=30,
        help="seconds to wait, before each timed run, for other processes to leave the CPUs",
    )
    ap.add_argument("--output", default=str(HERE / "results" / "latest.md"))
    ap.add_argument("--command", default="bench/run.sh")
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps must be at least 1")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, on_signal)

    bench = Bench(args)
    try:
        text = bench.run()
    except BenchError as e:
        log(f"FAILED: {e}")
        return 1
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        return 130
    finally:
        kill_all()
    print(text)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
