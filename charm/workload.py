"""The aar daemon on this machine: install, configure, run, trust, attach to Ubuntu Pro.

No `ops` import here: this module knows the machine, not Juju, so the charm's unit tests can
replace it with a stateful fake and the end-to-end test can exercise it for real.

Everything goes through the daemon's own tools where they exist: `aar config check` accepts
a config file before it replaces the running one, and `aar trust …` edits the trust store
(the running daemon re-reads it at every request, so trust changes need no restart).

All paths hang off `Paths.root`, which is `/` on a real machine. The end-to-end test sets
`AAR_CHARM_SYSROOT` to a scratch directory so that a test run writes nothing outside it.

Long on purpose: it is the one place that touches the machine, so that tests replace
exactly one thing.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from files import write_atomically

logger = logging.getLogger(__name__)

SERVICE = "aar"
SYSROOT_ENV = "AAR_CHARM_SYSROOT"


# A backup with fs storage reads and hashes every image; a large registry takes a while,
# and a command cut short leaves no archive (backup) or only whole versions (restore).
BACKUP_TIMEOUT = 6 * 3600

# <linux/sockios.h>: an interface's primary IPv4 address, the one netifaces and `ip -4`
# list first. Read with an ioctl so the charm needs neither a package nor `ip` on PATH.
SIOCGIFADDR = 0x8915
IFNAMSIZ = 16


class WorkloadError(Exception):
    """A step on the machine failed; the message says which and what to do."""


class ConfigRejected(WorkloadError):
    """`aar config check` refused a rendered config; the running config was kept."""


class TrustError(WorkloadError):
    """`aar trust …` refused a change; the message is the daemon's."""


class BackupError(WorkloadError):
    """`aar backup` or `aar restore` failed; the message is the daemon's report."""


class ProAttachError(WorkloadError):
    """The Ubuntu Pro client refused the token; the message is its reason, token removed."""


@dataclass(frozen=True)
class Paths:
    """Where the workload lives on the machine."""

    root: Path

    @classmethod
    def from_environment(cls) -> Paths:
        return cls(Path(os.environ.get(SYSROOT_ENV) or "/"))

    @property
    def binary(self) -> Path:
        return self.root / "usr/local/bin/aar"

    @property
    def config_dir(self) -> Path:
        return self.root / "etc/aar"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "aar.yaml"

    @property
    def unit_file(self) -> Path:
        return self.root / "etc/systemd/system" / f"{SERVICE}.service"

    @property
    def state_directory(self) -> Path:
        return self.root / "var/lib/aar"

    @property
    def backup_directory(self) -> Path:
        """Where the backup action writes when the operator names no file."""
        return self.root / "var/lib/aar-backups"

    @property
    def charm_state(self) -> Path:
        """What the charm remembers about the machine (not the daemon's state)."""
        return self.root / "var/lib/aar-charm"


UNIT_TEMPLATE = """\
# Written by the aar charm; changes are overwritten at the next upgrade.
[Unit]
Description=Anbox Application Registry
Documentation=https://anbox-cloud.io
After=network-online.target
Wants=network-online.target

[Service]
ExecStart={binary} serve --config {config}
Restart=on-failure
RestartSec=5
# SIGTERM stops accepting connections and lets transfers in flight finish
# (http.shutdown-timeout, 30s by default).
KillSignal=SIGTERM
TimeoutStopSec=60
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""


def _digest(path: Path) -> str | None:
    try:
        # hashlib.file_digest is 3.11+; Ubuntu 22.04 runs the charm on 3.10.
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except FileNotFoundError:
        return None


class Workload:
    """The aar daemon as a systemd service on this machine."""

    def __init__(self, paths: Paths | None = None):
        self.paths = paths or Paths.from_environment()

    # -- commands ------------------------------------------------------------------------

    def _run(
        self,
        args: list[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: int = 120,
    ) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(
                args, input=input, capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError as e:
            raise WorkloadError(f"cannot run {args[0]}: it is not installed") from e
        except subprocess.TimeoutExpired as e:
            raise WorkloadError(f"{' '.join(args[:3])} did not finish within {timeout}s") from e
        if check and result.returncode != 0:
            raise WorkloadError(
                f"{' '.join(args[:3])} failed: {_last_line(result.stderr or result.stdout)}"
            )
        return result

    def _aar(
        self, *args: str, input: str | None = None, check: bool = True, timeout: int = 120
    ) -> subprocess.CompletedProcess[str]:
        return self._run(
            [str(self.paths.binary), "--config", str(self.paths.config_file), *args],
            input=input,
            check=check,
            timeout=timeout,
        )

    def _systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(["systemctl", *args], check=check)

    # -- install -------------------------------------------------------------------------

    def install(self, binary: Path) -> bool:
        """Install the daemon shipped in the charm and its systemd unit.

        Returns whether the binary changed (a new charm revision), in which case a running
        daemon must be restarted to run it. Data and trust are never touched.
        """
        if not binary.is_file():
            raise WorkloadError(
                f"the charm has no daemon binary at {binary}; rebuild it with "
                "scripts/build-charm.sh and run `juju refresh aar --path ./aar_*.charm`"
            )
        changed = _digest(binary) != _digest(self.paths.binary)
        if changed:
            write_atomically(self.paths.binary, binary.read_bytes(), 0o755)
            logger.info("installed the aar daemon at %s", self.paths.binary)
        for directory in (self.paths.state_directory, self.paths.charm_state):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o700)
        self.paths.config_dir.mkdir(parents=True, exist_ok=True)
        unit = UNIT_TEMPLATE.format(binary=self.paths.binary, config=self.paths.config_file)
        if not self.paths.unit_file.exists() or self.paths.unit_file.read_text() != unit:
            write_atomically(self.paths.unit_file, unit.encode(), 0o644)
            self._systemctl("daemon-reload")
        self._systemctl("enable", SERVICE)
        return changed

    def version(self) -> str:
        """The daemon's version, e.g. `0.1.0` (from `aar --version`)."""
        out = self._run([str(self.paths.binary), "--version"]).stdout.strip()
        return out.split()[-1] if out else ""

    # -- config --------------------------------------------------------------------------

    def current_config(self) -> str | None:
        """The config the daemon runs with (or will at its next start), if any."""
        try:
            return self.paths.config_file.read_text()
        except FileNotFoundError:
            return None

    def ensure_config(self, text: str) -> bool:
        """Make `text` the daemon's config file; return whether it changed.

        The new file is checked with `aar config check` first; when the daemon refuses it,
        `ConfigRejected` is raised and the current file stays as it is. The file holds S3
        credentials, so it is readable by root only.
        """
        if self.current_config() == text:
            return False
        self.paths.config_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.paths.config_dir, prefix=".aar.yaml.", suffix=".new")
        try:
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            check = self._run([str(self.paths.binary), "config", "check", tmp], check=False)
            if check.returncode != 0:
                raise ConfigRejected(
                    _last_line(check.stderr or check.stdout).removeprefix("aar: ")
                )
            os.replace(tmp, self.paths.config_file)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        logger.info("wrote %s", self.paths.config_file)
        return True

    # -- service -------------------------------------------------------------------------

    def is_running(self) -> bool:
        return self._systemctl("is-active", "--quiet", SERVICE, check=False).returncode == 0

    def start(self) -> None:
        # Enabled again as well: a unit that stopped serving (filesystem storage on a
        # non-leader) disabled it, and must come back after a reboot once it serves.
        self._systemctl("enable", SERVICE)
        self._systemctl("start", SERVICE)

    def restart(self) -> None:
        self._systemctl("restart", SERVICE)

    def stop(self) -> None:
        """Stop and disable the service; the data directory and trust store stay."""
        self._systemctl("stop", SERVICE, check=False)
        self._systemctl("disable", SERVICE, check=False)

    def wait_ready(self, certificate: Path, timeout: float = 30.0) -> bool:
        """Wait until the service runs and its certificate exists (generated at first start).

        A daemon that is still not running after a second has exited (a config it cannot
        use, say): systemd would only restart it into the same error, so the hook does not
        wait the whole timeout for it.
        """
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            running = self.is_running()
            if running and certificate.exists():
                return True
            if not running and time.monotonic() - started > 1.0:
                return False
            time.sleep(0.2)
        return False

    def failure_reason(self) -> str:
        """The daemon's last error line from the journal, for the status message."""
        result = self._run(
            ["journalctl", "--unit", SERVICE, "--lines", "20", "--output", "cat", "--no-pager"],
            check=False,
        )
        lines = [line for line in result.stdout.splitlines() if line.startswith("aar: ")]
        return lines[-1].removeprefix("aar: ") if lines else ""

    def registry_status(self) -> dict:
        """What the registry holds, from `aar status --format json`.

        `applications`, `versions`, `blob_bytes`, `trusted_clients`, `trusted_publishers`,
        `last_publish`, `storage`, `index_loaded`. Asked at every status, so it is given
        seconds, not minutes: a daemon that does not answer must not hold up the hook.
        """
        out = self._aar("status", "--format", "json", timeout=10).stdout
        try:
            status = json.loads(out)
        except ValueError:
            raise WorkloadError(f"aar status printed no JSON: {_last_line(out)}") from None
        if not isinstance(status, dict):
            raise WorkloadError("aar status printed no JSON object")
        return status

    # -- trust ---------------------------------------------------------------------------

    def trusted(self) -> list[dict]:
        """Trusted certificates: fingerprint, role, subject, not_after, origin, added_at."""
        return json.loads(self._aar("trust", "list", "--format", "json").stdout or "[]")

    def revoked(self) -> list[dict]:
        """Revoked certificates: fingerprint, subject, revoked_at."""
        out = self._aar("trust", "list", "--format", "json", "--revoked").stdout
        return json.loads(out or "[]")

    def trust(self, pem: str, role: str, origin: str) -> str:
        """Trust `pem` as `role` ("client" or "publisher"); a trusted one changes role."""
        args = ["trust", "add", "-", "--origin", origin]
        if role == "publisher":
            args.append("--publisher")
        result = self._aar(*args, input=pem, check=False)
        if result.returncode != 0:
            raise TrustError(_strip_prefix(result.stderr))
        return result.stdout.strip()

    def untrust(self, fingerprint: str) -> str:
        """Stop trusting a certificate; it may be trusted again later."""
        result = self._aar("trust", "remove", fingerprint, check=False)
        if result.returncode != 0:
            raise TrustError(_strip_prefix(result.stderr))
        return result.stdout.strip()

    def revoke(self, fingerprint: str) -> str:
        """Revoke a certificate permanently."""
        result = self._aar("trust", "revoke", fingerprint, "--yes", check=False)
        if result.returncode != 0:
            raise TrustError(_strip_prefix(result.stderr))
        return result.stdout.strip()

    # -- backup --------------------------------------------------------------------------

    def new_backup_path(self, now: datetime.datetime) -> Path:
        """A file name for a backup taken at `now`, in a directory only root can read."""
        directory = self.paths.backup_directory
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        stem = f"aar-{now.astimezone(datetime.timezone.utc):%Y%m%dT%H%M%SZ}"
        path, n = directory / f"{stem}.backup", 1
        while path.exists():
            path, n = directory / f"{stem}-{n}.backup", n + 1
        return path

    def backup(self, path: Path, *, blobs: bool = True) -> str:
        """Write a backup to `path` with `aar backup`; return its summary.

        Safe beside the serving daemon. The archive holds the server's private key; the
        daemon writes it readable by root only and never prints the key.
        """
        args = ["backup", str(path)] + ([] if blobs else ["--no-blobs"])
        result = self._aar(*args, check=False, timeout=BACKUP_TIMEOUT)
        if result.returncode != 0:
            raise BackupError(_strip_prefix(result.stderr or result.stdout))
        # The summary goes to stderr (the archive may be on stdout).
        return (result.stderr or "").strip()

    def restore(self, path: Path, *, force: bool = False) -> str:
        """Restore the backup at `path` with `aar restore`; return its report.

        The daemon must be stopped first. A registry that already holds state is refused
        unless `force`; a backup restored only in part (a version whose image is missing)
        raises with the report, which names what was left out.
        """
        args = ["restore", str(path)] + (["--force"] if force else [])
        result = self._aar(*args, check=False, timeout=BACKUP_TIMEOUT)
        if result.returncode != 0:
            raise BackupError(_strip_prefix(result.stderr or result.stdout))
        return result.stdout.strip()

    # -- network -------------------------------------------------------------------------

    def interface_address(self, name: str) -> str:
        """The IPv4 address of a network interface of this machine."""
        return interface_address(name)

    # -- Ubuntu Pro ----------------------------------------------------------------------

    def pro_available(self) -> bool:
        return shutil.which("pro") is not None

    def _pro_record(self) -> Path:
        return self.paths.charm_state / "pro-attach.json"

    def pro_state(self, token: str) -> tuple[bool, str]:
        """(attached with this token, the client's reason if attaching with it failed).

        Only a digest of the token is kept, in a root-only file, to tell whether the
        token changed since the last attempt.
        """
        try:
            record = json.loads(self._pro_record().read_text())
        except (FileNotFoundError, ValueError):
            return (False, "")
        if record.get("token_sha256") != _token_digest(token):
            return (False, "")
        return (not record.get("error"), record.get("error") or "")

    def pro_attach(self, token: str) -> None:
        """Attach the machine to Ubuntu Pro with `token`.

        The token goes to `pro` in a root-only attach-config file, never on a command line
        (where `ps` would show it) and never into a message: the client's reason is kept
        and raised with any occurrence of the token replaced.
        """
        self.paths.charm_state.mkdir(parents=True, exist_ok=True)
        if self._pro_is_attached():
            if not self._pro_record().exists():
                # Attached before the charm came (an Ubuntu Pro cloud image, an operator):
                # that subscription is kept rather than replaced.
                logger.info("the machine is already attached to Ubuntu Pro; keeping that")
                self._record_pro(token, "")
                return
            # The charm attached it with a previous token: the new token replaces it.
            self._run(["pro", "detach", "--assume-yes"], check=False)
        result = self._run_pro_attach(token)
        error = ""
        if result.returncode != 0:
            reason = _pro_reason(result.stdout, result.stderr)
            error = _redact(reason, token) or "the Ubuntu Pro client gave no reason"
        self._record_pro(token, error)
        if error:
            raise ProAttachError(error)

    def _run_pro_attach(self, token: str) -> subprocess.CompletedProcess[str]:
        """`pro attach`, the token in a root-only attach-config file removed afterwards."""
        fd, attach_config = tempfile.mkstemp(dir=self.paths.charm_state, suffix=".yaml")
        try:
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(f"token: {json.dumps(token)}\n")
            return self._run(
                [
                    "pro",
                    "attach",
                    "--attach-config",
                    attach_config,
                    "--format",
                    "json",
                    "--assume-yes",
                ],
                check=False,
            )
        finally:
            os.unlink(attach_config)

    def _record_pro(self, token: str, error: str) -> None:
        write_atomically(
            self._pro_record(),
            json.dumps({"token_sha256": _token_digest(token), "error": error}).encode(),
            0o600,
        )

    def _pro_is_attached(self) -> bool:
        result = self._run(["pro", "status", "--format", "json"], check=False)
        try:
            return bool(json.loads(result.stdout).get("attached"))
        except ValueError:
            return False


def interface_address(name: str) -> str:
    """The IPv4 address of the network interface `name` (`public_interface`)."""
    present = [interface for _, interface in socket.if_nameindex()]
    if name not in present:
        raise WorkloadError(no_such_interface(name, present))
    request = struct.pack("256s", name.encode()[: IFNAMSIZ - 1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            reply = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)
        except OSError:
            raise WorkloadError(no_ipv4_address(name)) from None
    # struct ifreq: the name (IFNAMSIZ bytes), then a sockaddr_in whose address is at 4.
    return socket.inet_ntoa(reply[IFNAMSIZ + 4 : IFNAMSIZ + 8])


def no_such_interface(name: str, present: list[str]) -> str:
    return (
        f"network interface {name!r} does not exist on this machine "
        f"(it has {', '.join(present) or 'none'})"
    )


def no_ipv4_address(name: str) -> str:
    return f"network interface {name!r} has no IPv4 address"


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]") if secret else text


def _pro_reason(stdout: str, stderr: str) -> str:
    """The human reason from `pro attach --format json`, or its last output line."""
    try:
        errors = json.loads(stdout).get("errors") or []
        messages = [e.get("message", "") for e in errors if e.get("message")]
        if messages:
            return "; ".join(messages)
    except (ValueError, AttributeError):
        pass
    return _last_line(stderr or stdout)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _strip_prefix(stderr: str) -> str:
    """`aar: <message>` → `<message>`; keeps every line (ambiguity lists several)."""
    return (stderr or "").strip().removeprefix("aar: ") or "no output"
