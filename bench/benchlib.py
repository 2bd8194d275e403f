"""What both benchmarks (bench/bench.py and bench/s3/bench_s3.py) need the same way.

Child processes that every exit path must stop, the CPU time and memory of a process from
/proc, how busy the machine is, free ports, the TLS material every client presents (with
wrk's OpenSSL configuration and the client-certificate shim), wrk's report, and random
test images. Python 3.10 standard library only.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
GIB = 1 << 30
MIB = 1 << 20
CIPHER = "TLS_AES_128_GCM_SHA256"

# Every child process (servers and clients) still running; killed on exit.
LIVE: dict[int, subprocess.Popen] = {}

# The prefix of log lines: the benchmark's name, and whether the time of day follows it.
_LOG = {"tag": "bench", "clock": True}


class BenchError(Exception):
    pass


def set_log_tag(tag: str, clock: bool) -> None:
    _LOG.update(tag=tag, clock=clock)


def log(msg: str) -> None:
    stamp = f" {time.strftime('%H:%M:%S')}" if _LOG["clock"] else ""
    print(f"[{_LOG['tag']}{stamp}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


def popen(cmd, **kw) -> subprocess.Popen:
    p = subprocess.Popen([str(c) for c in cmd], **kw)
    LIVE[p.pid] = p
    return p


def reap(p: subprocess.Popen, timeout: float | None = None):
    try:
        return p.wait(timeout)
    finally:
        if p.returncode is not None:
            LIVE.pop(p.pid, None)


def stop(p: subprocess.Popen | None, grace: float = 15) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if p is None:
        return
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    LIVE.pop(p.pid, None)


def run(cmd, *, timeout=120, check=True, env=None, stdin_data=None) -> subprocess.CompletedProcess:
    p = popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
        env=env,
    )
    try:
        out, err = p.communicate(stdin_data, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        LIVE.pop(p.pid, None)
        raise BenchError(f"timed out after {timeout}s: {shlex.join(map(str, cmd))}") from None
    LIVE.pop(p.pid, None)
    cp = subprocess.CompletedProcess(cmd, p.returncode, out, err)
    if check and cp.returncode != 0:
        raise BenchError(
            f"exit {cp.returncode}: {shlex.join(map(str, cmd))}\n"
            f"{err.decode(errors='replace')[-2000:]}"
        )
    return cp


def kill_all() -> None:
    for pid, p in list(LIVE.items()):
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            except ProcessLookupError:
                pass
        LIVE.pop(pid, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"nothing listens on port {port} after {timeout}s")


# --------------------------------------------------------------------------- measurements


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    data = Path(f"/proc/{pid}/stat").read_text()
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {key} in /proc/{pid}/status")


def system_busy_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs from /proc/stat."""
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = vals[3] + vals[4]  # idle + iowait
    return sum(vals) - idle, sum(vals)


def wait_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Waits (at most max_wait s) until the machine is mostly idle; returns the last busy
    fraction."""
    deadline = time.monotonic() + max_wait
    warned = False
    while True:
        b0, t0 = system_busy_ticks()
        time.sleep(0.5)
        b1, t1 = system_busy_ticks()
        busy = (b1 - b0) / max(1, t1 - t0)
        if busy < threshold or time.monotonic() > deadline:
            return busy
        if not warned:
            log(
                f"machine busy ({busy:.0%} of all CPUs used by other processes); "
                f"waiting up to {max_wait:.0f} s"
            )
            warned = True
        time.sleep(1.5)


def random_file(path: Path, size: int) -> str:
    """Writes `size` random bytes to `path`; returns their `sha256:<hex>`."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 16 * MIB))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return "sha256:" + h.hexdigest()


# --------------------------------------------------------------------------- TLS material


class Tls:
    """The client and peer certificates, wrk's OPENSSL_CONF and the client-certificate shim
    (`client_cert_shim.c` in `helpers`, compiled here; see bench/README.md for why)."""

    def __init__(self, work: Path, helpers: Path):
        self.dir = work / "tls"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.helpers = helpers
        self.client_crt = self.dir / "client.crt"
        self.client_key = self.dir / "client.key"
        self.peer_crt = self.dir / "registry.crt"
        self.peer_key = self.dir / "registry.key"
        self.openssl_conf = self.dir / "openssl-wrk.cnf"
        self.shim = self.dir / "client_cert_shim.so"

    def make(self) -> None:
        # ECDSA P-256 everywhere (rcgen's default key type, so aar's own
        # certificate is most likely of the same kind; the report shows both).
        def selfsigned(crt, key, cn, extra):
            run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                    key,
                    "-out",
                    crt,
                    "-days",
                    "7",
                    "-subj",
                    f"/CN={cn}",
                    *extra,
                ]
            )

        selfsigned(
            self.peer_crt,
            self.peer_key,
            "127.0.0.1",
            [
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-addext",
                "extendedKeyUsage=serverAuth",
            ],
        )
        selfsigned(
            self.client_crt,
            self.client_key,
            "aar-bench-client",
            ["-addext", "extendedKeyUsage=clientAuth"],
        )
        # OPENSSL_CONF for wrk: TLS 1.3 only, one AEAD. The client certificate
        # cannot be set here (system_default is applied without
        # SSL_CONF_FLAG_CERTIFICATE), hence the LD_PRELOAD shim.
        self.openssl_conf.write_text(
            "openssl_conf = openssl_init\n"
            "[openssl_init]\n"
            "ssl_conf = ssl_sect\n"
            "[ssl_sect]\n"
            "system_default = system_default_sect\n"
            "[system_default_sect]\n"
            "MinProtocol = TLSv1.3\n"
            f"Ciphersuites = {CIPHER}\n"
        )
        run(
            [
                "cc",
                "-O2",
                "-shared",
                "-fPIC",
                "-o",
                self.shim,
                self.helpers / "client_cert_shim.c",
                "-ldl",
            ]
        )

    def wrk_env(self, with_cert: bool = True) -> dict:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["OPENSSL_CONF"] = str(self.openssl_conf)
        if with_cert:
            env["LD_PRELOAD"] = str(self.shim)
            env["BENCH_CLIENT_CERT"] = str(self.client_crt)
            env["BENCH_CLIENT_KEY"] = str(self.client_key)
        return env


# --------------------------------------------------------------------------- wrk


def parse_wrk(text: str) -> dict:
    m = re.search(r"^BENCH-WRK (.*)$", text, re.M)
    if not m:
        raise BenchError(f"no BENCH-WRK line in wrk output:\n{text[-800:]}")
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def wrk(
    tls: Tls, url: str, *, threads: int, connections: int, duration: int, with_cert: bool = True
) -> dict:
    """One keep-alive wrk run with `wrk_report.lua`: its BENCH-WRK figures, plus its
    whole output under "text"."""
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        tls.helpers / "wrk_report.lua",
        url,
    ]
    cp = run(cmd, env=tls.wrk_env(with_cert), timeout=duration + 60, check=False)
    if cp.returncode != 0:
        raise BenchError(f"wrk failed ({cp.returncode}): {cp.stderr.decode()[-500:]}")
    res = parse_wrk(cp.stdout.decode())
    res["text"] = cp.stdout.decode()
    return res
