#!/usr/bin/env python3
"""Benchmark aar against Debian's docker-registry (CNCF distribution 2.8), against nginx
serving its metadata bytes, under 1,000 polling clients, and at start-up on 100,000
versions.

Run through bench/run.sh, which installs the tools, makes the work directory
and cleans up after this script. Python 3.11 standard library only; every
network request goes to 127.0.0.1 over TLS 1.3 with TLS_AES_128_GCM_SHA256
and a client certificate.

Long on purpose: it is the whole benchmark, scenarios and report; what both
benchmarks share is in benchlib.py.
"""

from __future__ import annotations

import argparse
import contextlib
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
import urllib.request
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
    wait_port,
    wait_quiet,
    wrk,
)

APP = "bench"  # aar application name and docker-registry repository name
ARCH = "amd64"
HERE = Path(__file__).resolve().parent
LABELS = {"aar": "aar", "registry": "docker-registry", "nginx": "nginx"}
# The image behind the metadata of the nginx, polling and start-up scenarios: what they
# measure does not depend on its size.
SMALL = 1 << 20
# What `--only` runs: the scenarios, and which servers the upload-to-handshake ones compare.
ONLY = {
    "both": (["aar", "registry"], ["base", "nginx", "polling", "startup"]),
    "aar": (["aar"], ["base", "polling", "startup"]),
    "peer": (["registry"], ["base"]),
    "nginx": (["aar"], ["nginx"]),
    "polling": (["aar"], ["polling"]),
    "startup": (["aar"], ["startup"]),
}
# The peer of a row when it is not docker-registry.
PEER_OF = {"nginx_rps": "nginx", "nginx_p99_ms": "nginx", "nginx_cpu_us": "nginx"}

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

    def start(self, again: bool = False) -> None:
        """Starts aar; `again`: on the state and storage of an earlier start. Sets
        `ready_s`, the seconds from the start of the process to its ready line."""
        b = self.bench.aar_bin
        cfg = self.dir / "aar.yaml"
        if not again:
            # Its own metrics port: several instances, and other aar daemons on this
            # machine, must not contend for the default one.
            self.metrics_port = free_port()
            cfg.write_text(
                f'http: {{addr: 127.0.0.1:{self.port}, tls: {{min-version: "1.3"}}}}\n'
                f"metrics: {{addr: 127.0.0.1:{self.metrics_port}}}\n"
                f"state-directory: {self.dir}/state\n"
                f"storage: {{fs: {{root-directory: {self.dir}/data}}}}\n"
            )
            run(
                [b, "trust", "add", "--config", cfg, self.tls.client_crt, "--publisher"],
                timeout=60,
            )
        t0 = time.monotonic()
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
        deadline = time.monotonic() + 120
        m = None
        while time.monotonic() < deadline:
            self.alive()
            for line in (self.dir / "stdout.log").read_text(errors="replace").splitlines():
                m = self.READY.match(line)
                if m:
                    break
            if m:
                break
            time.sleep(0.01)
        if not m:
            raise BenchError(f"aar printed no ready line within 120 s:\n{self.log_tail()}")
        self.ready_s = time.monotonic() - t0
        self.ready_rss_kib = proc_status_kib(self.pid, "VmRSS")
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

    def duration_buckets(self) -> dict[float, float]:
        """aar_http_request_duration_seconds from /metrics: cumulative count per bound."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        out = {}
        for m in re.finditer(
            r'^aar_http_request_duration_seconds_bucket\{le="([^"]+)"[^}]*\} (\S+)$', text, re.M
        ):
            le = float(m.group(1))
            out[le] = out.get(le, 0.0) + float(m.group(2))  # summed over routes and statuses
        return out

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


class Nginx(Server):
    """Debian's nginx serving one file, the bytes of aar's metadata answer, at the same path
    and under the same TLS terms: TLS 1.3, the peer's ECDSA certificate, and the client
    certificate required (`ssl_verify_client on` with that certificate as the only CA, as
    docker-registry's `clientcas`: a pinned certificate, checked in the handshake). aar
    accepts any client certificate in the handshake and looks its fingerprint up per
    request; `optional_no_ca` would skip the chain check but not add a lookup, and with
    keep-alive either costs once per connection, not per request."""

    kind = "nginx"
    label = "nginx"

    def start(self, body: bytes, path: str) -> None:
        f = self.dir / "metadata.json"
        f.write_bytes(body)
        t = self.tls
        # Root runs nginx's workers as `nobody`, who cannot enter the private work directory.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = self.dir / "nginx.conf"
        conf.write_text(
            f"{user}"
            "worker_processes auto;\n"  # one per core, as aar's runtime has one thread per core
            "daemon off;\n"
            f"pid {self.dir}/nginx.pid;\n"
            f"error_log {self.dir}/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            "  access_log off;\n"
            # nginx closes a keep-alive connection after 1000 requests by default; aar
            # does not, and a new handshake per 1000 requests is not what is compared.
            "  keepalive_requests 100000000;\n"
            "  open_file_cache max=16 inactive=60s;\n"
            "  open_file_cache_valid 60s;\n"
            "  server {\n"
            f"    listen 127.0.0.1:{self.port} ssl;\n"
            f"    ssl_certificate {t.peer_crt};\n"
            f"    ssl_certificate_key {t.peer_key};\n"
            "    ssl_protocols TLSv1.3;\n"
            "    ssl_verify_client on;\n"
            f"    ssl_client_certificate {t.client_crt};\n"
            f"    location = {path} {{ default_type application/json; alias {f}; }}\n"
            "    location / { return 404; }\n"
            "  }\n"
            "}\n"
        )
        with open(self.dir / "nginx.log", "wb") as out:
            self.proc = popen(
                ["nginx", "-p", f"{self.dir}/", "-e", self.dir / "error.log", "-c", conf],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            self.alive()
            try:
                wait_port(self.port, 0.5)
                break
            except BenchError:
                if time.monotonic() > deadline:
                    raise
        self.meta_path = path
        self.client = Client(self.tls, self.dir, t.peer_crt)
        served = expect(self.req("GET", path), 200).body
        if served != body:
            raise BenchError("nginx does not serve the bytes it was given")
        v = run(["nginx", "-v"]).stderr.decode().strip()
        self.version = v.split(":", 1)[-1].strip()

    def pids(self) -> list[int]:
        """The master and its workers."""
        out = [self.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2 :].split()[1]) == self.pid:
                out.append(int(stat.parent.name))
        return out

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):  # a worker that has just exited
                total += cpu_seconds(pid)
        return total

    def unauthenticated_check(self) -> str:
        r = self.client.request("GET", self.base + self.meta_path, cert=False)
        return f"curl without a client certificate: HTTP {r.status}"


# --------------------------------------------------------------------------- benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.tls = Tls(self.work, HERE)
        self.aar_bin = args.aar
        self.kinds, self.scenarios = ONLY[args.only]
        self.samples: dict[str, dict[str, list[float]]] = {k: {} for k in LABELS}
        self.final: dict[str, Server] = {}
        self.all_hwm: dict[str, list[int]] = {k: [] for k in LABELS}
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
        self.small_blob = self.work / "small.bin"
        self.small_digest = random_file(self.small_blob, SMALL)
        if "base" in self.scenarios:
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
        if "base" in self.scenarios:
            self.phase_upload()
            self.prepare_downloads()
            self.phase_download()
            self.phase_metadata()
            self.phase_handshakes()
            self.phase_rss()
        if "nginx" in self.scenarios:
            self.phase_nginx()
        if "polling" in self.scenarios:
            self.phase_polling()
        if "startup" in self.scenarios:
            self.phase_startup()
        self.load_after = os.getloadavg()
        self.finished = datetime.datetime.now(datetime.timezone.utc)
        return self.report()

    # ------------------------------------------------------------------ scenarios of issue 12
    def small_aar(self, tag: str) -> Aar:
        """A fresh aar with one published version of a 1 MiB image."""
        srv = self.new_server("aar", tag)
        srv.upload(self.small_blob, self.small_digest, SMALL)
        srv.publish(self.small_digest, SMALL)
        return srv

    def phase_nginx(self) -> None:
        """aar's metadata GET against nginx serving the same bytes as a static file."""
        srv = self.small_aar("nginx-anchor")
        ref = expect(srv.req("GET", srv.meta_path), 200)
        srv.meta_bytes = ref.size_header + ref.size_down
        ngx = Nginx(self, "static")
        ngx.start(ref.body, srv.meta_path)
        self.versions["nginx"] = ngx.version
        self.tls_info["nginx"] = ngx.tls_check(ngx.meta_path)
        self.checks.append(
            f"nginx: serves at `{ngx.meta_path}` the {len(ref.body)} bytes that aar answers "
            f"there (compared); {ngx.unauthenticated_check()}"
        )
        neg = wrk(
            self.tls,
            ngx.base + ngx.meta_path,
            threads=1,
            connections=1,
            duration=1,
            with_cert=False,
        )
        ok = neg["requests"] > 0 and neg["status"] == neg["requests"]
        self.checks.append(
            f"nginx: wrk WITHOUT the shim, 1 s: {neg['requests']:.0f} requests, "
            f"{neg['status']:.0f} answered >= 400 (400, no required certificate)"
            + ("" if ok else " — UNEXPECTED")
        )
        ngx.meta_bytes = expect(ngx.req("GET", ngx.meta_path), 200).size_header + len(ref.body)
        for s in (srv, ngx):
            self.check_wrk(s, self.wrk(s, 2))
        reps = self.args.reps
        for rep in range(reps):
            for s in (srv, ngx) if rep % 2 == 0 else (ngx, srv):
                self.quiet()
                with Meter(s) as m:
                    res = self.wrk(s, self.args.duration)
                self.check_wrk(s, res)
                rps = res["requests"] / (res["duration_us"] / 1e6)
                self.add(s.kind, "nginx_rps", rps)
                self.add(s.kind, "nginx_p99_ms", res["p99_us"] / 1000)
                self.add(s.kind, "nginx_cpu_us", m.cpu / res["requests"] * 1e6)
                log(f"metadata vs nginx rep {rep + 1}/{reps} {s.label:8} {rps:8.0f} req/s")
                s.alive()
        ngx.stop()
        srv.stop()

    def phase_polling(self) -> None:
        """Many keep-alive clients, each asking every interval whether the metadata changed."""
        a = self.args
        srv = self.small_aar("polling")
        etag = expect(srv.req("GET", srv.meta_path), 200).headers.get("etag")
        if not etag:
            raise BenchError(f"aar sent no ETag for GET {srv.meta_path}")
        expect(srv.req("GET", srv.meta_path, headers=[f"If-None-Match: {etag}"]), 304)
        cmd = [
            "wrk",
            f"-t{a.wrk_threads}",
            f"-c{a.poll_clients}",
            f"-d{a.poll_duration}s",
            "--timeout",
            "5s",
            "--latency",
            "-s",
            HERE / "wrk_poll.lua",
            srv.base + srv.meta_path,
            "--",
            etag,
            str(a.poll_interval_ms),
        ]
        for rep in range(a.reps):
            self.quiet()
            out = self.work / "wrk-poll.out"
            rss = []
            before = srv.duration_buckets()
            with Meter(srv) as m, open(out, "wb") as f:
                p = popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=self.tls.wrk_env())
                while p.poll() is None:
                    rss.append(proc_status_kib(srv.pid, "VmRSS"))
                    time.sleep(0.5)
                reap(p)
            text = out.read_text(errors="replace")
            if p.returncode != 0:
                raise BenchError(f"wrk (polling) failed ({p.returncode}): {text[-500:]}")
            res = parse_wrk(text)
            after = srv.duration_buckets()
            inside = {le: after[le] - before.get(le, 0) for le in after}
            self.add("aar", "poll_srv_p99_ms", bucket_quantile(inside, 0.99) * 1000)
            errors = sum(res[k] for k in ("connect", "read", "write", "timeout", "not304"))
            secs = res["duration_us"] / 1e6
            self.add("aar", "poll_rps", res["requests"] / secs)
            self.add("aar", "poll_errors", errors)
            self.add("aar", "poll_p50_ms", res["p50_us"] / 1000)
            self.add("aar", "poll_p99_ms", res["p99_us"] / 1000)
            self.add("aar", "poll_cpu", m.cpu / secs)
            self.add("aar", "poll_rss_mib", max(rss) / 1024)
            log(
                f"polling rep {rep + 1}/{a.reps}: {res['requests'] / secs:6.0f} req/s, "
                f"{errors:.0f} errors, p99 {res['p99_us'] / 1000:.2f} ms, "
                f"RSS {max(rss) / 1024:.1f} MiB"
            )
            srv.alive()
        self.add("aar", "poll_hwm_mib", srv.hwm_kib() / 1024)
        self.checks.append(
            f"polling: wrk -c{a.poll_clients} with `wrk_poll.lua` (If-None-Match: {etag}, "
            f"{a.poll_interval_ms} ms between a response and the next request on each "
            "connection); errors = socket errors, timeouts (5 s) and answers other than 304"
        )
        srv.stop()

    def phase_startup(self) -> None:
        """Start-up on a registry of many versions, written straight into the fs layout."""
        a = self.args
        empty = self.new_server("aar", "startup-empty")
        self.add("aar", "start0_rss_mib", empty.ready_rss_kib / 1024)
        empty.remove()
        srv = self.small_aar("startup")
        srv.stop()
        apps_dir = srv.dir / "data" / "apps"
        seed = json.loads((apps_dir / APP / "versions" / "1.json").read_text())
        shutil.rmtree(apps_dir / APP)
        per_app = max(1, a.startup_versions // a.startup_apps)
        log(f"writing {a.startup_apps} x {per_app} version records under {apps_dir}")
        manifest = seed["manifest"]
        for i in range(a.startup_apps):
            name = f"app{i:05d}"
            vdir = apps_dir / name / "versions"
            vdir.mkdir(parents=True)
            own = manifest.replace(f"name: {APP}", f"name: {name}")
            rec = dict(seed, application=name, manifest=own)
            for v in range(1, per_app + 1):
                rec["version"] = v
                path = vdir / f"{v}.json"
                path.write_text(json.dumps(rec, indent=2))
                path.chmod(0o600)
        total = a.startup_apps * per_app
        self.startup_total = (a.startup_apps, total)
        for rep in range(a.reps):
            self.quiet()
            busy0, kids0, self0 = system_busy_ticks()[0], children_cpu(), time.process_time()
            t0 = time.monotonic()
            srv.start(again=True)
            r = expect(srv.req("GET", "/1.0/applications", timeout=120), 200)
            # What other processes used meanwhile (Meter's figure; the daemon is new).
            ours = srv.cpu() + children_cpu() - kids0 + time.process_time() - self0
            busy = (system_busy_ticks()[0] - busy0) / CLK_TCK
            span = (time.monotonic() - t0) * len(os.sched_getaffinity(0))
            self.foreign.append(max(0.0, busy - ours) / span)
            # The first full answer a client asking right at the ready line would get.
            listed = srv.ready_s + r.time_total
            apps = r.json()["metadata"]
            n = sum(len(x["versions"]) for x in apps)
            if len(apps) != a.startup_apps or n != total:
                raise BenchError(
                    f"the listing has {len(apps)} applications and {n} versions, "
                    f"expected {a.startup_apps} and {total}"
                )
            self.add("aar", "start_ready_s", srv.ready_s)
            self.add("aar", "start_list_s", listed)
            self.add("aar", "start_rss_mib", srv.ready_rss_kib / 1024)
            self.add("aar", "start_list_rss_mib", proc_status_kib(srv.pid, "VmRSS") / 1024)
            log(
                f"start-up rep {rep + 1}/{a.reps}: serving after {srv.ready_s:.2f} s, full "
                f"listing after {listed:.2f} s, RSS {srv.ready_rss_kib / 1024:.1f} MiB"
            )
            srv.stop()
        s = self.samples["aar"]
        self.add(
            "aar",
            "start_per_version",
            (med(s["start_rss_mib"]) - med(s["start0_rss_mib"])) * MIB / total,
        )
        self.checks.append(
            f"start-up: {a.startup_apps} applications x {per_app} versions, each record a copy "
            "of one published through the API with its name and number changed, all naming "
            "the same 1 MiB image; the listing `GET /1.0/applications` holds every one; the "
            "records are in the page cache (written just before)"
        )
        srv.remove()

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
                "≥ 4× peer",
                lambda r, v: r >= 4,
            ),
            (
                "upload_cpu",
                f"{sz} upload: server CPU (s/GiB)",
                "{:.2f}",
                "upload_cpu",
                "≤ 0.30× peer",
                lambda r, v: r <= 0.30,
            ),
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
                "≤ 0.60× peer",
                lambda r, v: r <= 0.60,
            ),
            (
                "downloadN_mbps",
                f"{sz} download, {a.parallel} clients: aggregate throughput (MB/s)",
                "{:.0f}",
                None,
                "≥ 1.2× peer",
                lambda r, v: r >= 1.2,
            ),
            (
                "downloadN_cpu",
                f"{sz} download, {a.parallel} clients: server CPU (s/GiB)",
                "{:.2f}",
                None,
                "",
                None,
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
        if "base" not in self.scenarios:
            rows = []
        if "nginx" in self.scenarios:
            rows += [
                (
                    "nginx_rps",
                    "metadata GET, peer column = nginx serving the same bytes: requests/s",
                    "{:,.0f}",
                    None,
                    "≥ 1.2× nginx",
                    lambda r, v: r >= 1.2,
                ),
                (
                    "nginx_p99_ms",
                    "metadata GET vs nginx: p99 latency (ms)",
                    "{:.2f}",
                    None,
                    "",
                    None,
                ),
                (
                    "nginx_cpu_us",
                    "metadata GET vs nginx: server CPU per request (µs)",
                    "{:.0f}",
                    None,
                    "",
                    None,
                ),
            ]
        if "polling" in self.scenarios:
            poll = (
                f"polling, {a.poll_clients} keep-alive clients each every {a.poll_interval_ms} ms"
            )
            rows += [
                ("poll_rps", f"{poll}: answers/s (304)", "{:,.0f}", None, "", None),
                ("poll_errors", f"{poll}: errors", "{:.0f}", None, "0", lambda r, v: v == 0),
                ("poll_p50_ms", f"{poll}: p50 latency (ms)", "{:.2f}", None, "", None),
                (
                    "poll_p99_ms",
                    f"{poll}: p99 latency (ms)",
                    "{:.2f}",
                    None,
                    "< 10 ms",
                    lambda r, v: v < 10,
                ),
                (
                    "poll_srv_p99_ms",
                    f"{poll}: p99 inside aar, bucket of its request-duration histogram (ms, ≤)",
                    "{:g}",
                    None,
                    "",
                    None,
                ),
                ("poll_cpu", f"{poll}: server CPU (cores)", "{:.2f}", None, "", None),
                (
                    "poll_rss_mib",
                    f"{poll}: RSS during the run, max (MiB)",
                    "{:.1f}",
                    None,
                    "≤ 64 MiB",
                    lambda r, v: v <= 64,
                ),
            ]
        if "startup" in self.scenarios:
            apps, total = getattr(self, "startup_total", (a.startup_apps, a.startup_versions))
            st = f"start-up, {total:,} versions in {apps:,} applications (fs)"
            rows += [
                (
                    "start_ready_s",
                    f"{st}: time to serving (s)",
                    "{:.2f}",
                    None,
                    "< 5 s",
                    lambda r, v: v < 5,
                ),
                (
                    "start_list_s",
                    f"{st}: time to the first full listing (s)",
                    "{:.2f}",
                    None,
                    "",
                    None,
                ),
                ("start_rss_mib", f"{st}: RSS when serving (MiB)", "{:.1f}", None, "", None),
                (
                    "start_list_rss_mib",
                    f"{st}: RSS after the first full listing (MiB)",
                    "{:.1f}",
                    None,
                    "",
                    None,
                ),
                (
                    "start0_rss_mib",
                    "start-up, 0 versions: RSS when serving (MiB)",
                    "{:.1f}",
                    None,
                    "",
                    None,
                ),
                (
                    "start_per_version",
                    "start-up: RSS growth per version (bytes)",
                    "{:,.0f}",
                    None,
                    "stated",
                    None,
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
        if "nginx" in vers:
            lines.append(
                f"- second anchor: nginx {vers['nginx']} (Debian package `nginx` "
                f"{run(['dpkg-query', '-W', '-f=${Version}', 'nginx']).stdout.decode()})"
            )
        lines.append(f"- clients: {vers['curl']}; {vers['openssl']}; wrk {vers['wrk']}")
        lines.append(f"- command: `{a.command}`")
        lines.append(
            f"- medians of {a.reps} repetitions; "
            + (f"test file {size_txt} of random bytes; " if "base" in self.scenarios else "")
            + f"MB = 10^6 bytes; wrk -t{a.wrk_threads} -c{a.wrk_connections} -d{a.duration}s; "
            f"s_time -new -time {a.duration}; scenarios: {', '.join(self.scenarios)}"
        )
        tls = "; ".join(
            f"{LABELS[k]}: {v['Protocol version']} "
            f"{v['Ciphersuite']}, server signature {v['Signature type']}, "
            f"group {v['Server Temp Key']}"
            for k, v in self.tls_info.items()
        )
        lines.append(f"- TLS as negotiated (openssl s_client with the benchmark's flags): {tls}")
        lines.append("")
        peers = [LABELS[k] for k in ("registry", "nginx") if self.samples[k]]
        lines.append(
            f"| measure | aar | {' / '.join(peers) or 'peer'} | aar/peer | target (aar) | met "
            "| peer, earlier reference |"
        )
        lines.append("|---|---:|---:|---:|---|---|---:|")
        for key, label, fmt, ref, target, check in rows:
            va = med(self.samples["aar"].get(key))
            vp = med(self.samples[PEER_OF.get(key, "registry")].get(key))
            ratio = va / vp if va is not None and vp else None
            met = ""
            if check and va is not None and (ratio is not None or "×" not in target):
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
        notes = [n for k in self.kinds if k in self.final for n in self.final[k].notes]
        if notes:
            lines.append("")
            lines.append("## Notes\n")
            lines += [f"- {n}" for n in notes]
        return "\n".join(lines) + "\n"


def bucket_quantile(cumulative: dict[float, float], q: float) -> float:
    """The upper bound of the histogram bucket that holds quantile q."""
    bounds = sorted(cumulative)
    if not bounds:
        raise BenchError("aar's request-duration histogram is empty")
    total = cumulative[bounds[-1]]
    for le in bounds:
        if cumulative[le] >= q * total:
            return le
    return bounds[-1]


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
    ap.add_argument("--only", choices=list(ONLY), default="both")
    ap.add_argument("--poll-clients", type=int, default=1000)
    ap.add_argument("--poll-interval-ms", type=int, default=100)
    ap.add_argument("--poll-duration", type=int, default=30, help="seconds per polling run")
    ap.add_argument("--startup-versions", type=int, default=100_000)
    ap.add_argument("--startup-apps", type=int, default=1000)
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
    ap.add_argument(
        "--output",
        help="default bench/results/latest.md, or latest-SCENARIO.md for --only "
        "nginx|polling|startup",
    )
    ap.add_argument("--command", default="bench/run.sh")
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    if args.output is None:
        name = "latest.md" if args.only in ("both", "aar", "peer") else f"latest-{args.only}.md"
        args.output = str(HERE / "results" / name)

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
