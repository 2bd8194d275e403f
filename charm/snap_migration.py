"""Taking over a machine from the snap-based official charm (`canonical/aar-operator`).

That charm installs the `aar` snap, whose daemon (`snap.aar.daemon.service`) listens on the
same port, 3000 by default, and keeps everything under `/var/snap/aar/common`: its config
in `conf/main.yaml`, its server certificate and key in `certs/server.crt` and
`certs/server.key`, trusted AMS certificates as files in `certs/clients` and
`certs/publishers`. (Read from a snapshot of that charm's repository; the snap itself is
not public, so its image store is not known beyond being in its own format.)

Only the server certificate and key are carried over: AMS pins the certificate's
fingerprint, and with them the registry keeps it. The images are not (another format), nor
is trust as such: the related AMS units are trusted again from their relation data, which
the relations keep across `juju refresh`.

Like `workload.py`, no `ops` here, and every path hangs off `Paths.root`, the `snap`
command included (`<root>/usr/bin/snap`): on a real machine that is snapd's own, and a test
puts a stand-in there.
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from files import write_private
from workload import Paths, WorkloadError

logger = logging.getLogger(__name__)

SNAP = "aar"

IMAGES_LEFT = "its images (publish them again from the publisher AMS)"
TRUST_LEFT = "its trust added by hand (aar trust add)"
IDENTITY_LEFT = "its server key and certificate (AMS must pin the new fingerprint)"


class SnapError(WorkloadError):
    """snapd refused to stop the snap's daemon; the charm's own must not start beside it."""


@dataclass(frozen=True)
class Replaced:
    """What taking over from the snap carried over and what it left behind."""

    carried: list[str]
    left: list[str]

    def to_json(self) -> str:
        return json.dumps({"carried": self.carried, "left": self.left}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Replaced:
        data = json.loads(text)
        return cls(carried=list(data.get("carried", [])), left=list(data.get("left", [])))


class SnapRegistry:
    """The `aar` snap on this machine, if the official charm installed it."""

    def __init__(self, paths: Paths):
        self.paths = paths

    @property
    def snap_command(self) -> Path:
        return self.paths.root / "usr/bin/snap"

    @property
    def common(self) -> Path:
        return self.paths.root / "var/snap" / SNAP / "common"

    @property
    def record(self) -> Path:
        """Kept once the snap was replaced, until the operator removes the snap."""
        return self.paths.charm_state / "snap-replaced.json"

    def _snap(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.snap_command), *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def installed(self) -> bool:
        """Whether the `aar` snap is installed (`snap list aar`); no snapd: it is not."""
        if not self.snap_command.exists():
            return False
        try:
            return self._snap("list", SNAP).returncode == 0
        except (OSError, subprocess.TimeoutExpired) as e:
            # Status must not fail on it; a snap that cannot be listed cannot be stopped
            # either, which the next install or upgrade reports.
            logger.warning("cannot ask snapd whether the %s snap is installed: %s", SNAP, e)
            return False

    def replaced(self) -> Replaced | None:
        """What an earlier take-over left behind, while the snap is still installed."""
        try:
            text = self.record.read_text()
        except FileNotFoundError:
            return None
        if not self.installed():
            return None
        return Replaced.from_json(text)

    def replace(self, certificate: Path, key: Path) -> Replaced | None:
        """Stop and disable the snap's daemon and carry its server identity over.

        Nothing happens without the snap. The identity is copied only when both files are
        readable and this daemon has neither yet: an identity of its own is never replaced
        (AMS may already pin it). Done again later, only the stop is repeated: a snap
        enabled again behind the charm's back is stopped again.
        """
        if not self.installed():
            return None
        self._stop()
        try:
            return Replaced.from_json(self.record.read_text())
        except FileNotFoundError:
            pass
        carried, left = [], [IMAGES_LEFT]
        if self._carry_identity(certificate, key):
            carried.append("server key and certificate")
        elif not (certificate.exists() and key.exists()):
            left.append(IDENTITY_LEFT)
        if self._has_trust():
            left.append(TRUST_LEFT)
        done = Replaced(carried=carried, left=left)
        write_private(self.record, done.to_json().encode())
        logger.warning(
            "stopped and disabled the %s snap; carried over: %s; not carried over: %s",
            SNAP,
            ", ".join(carried) or "nothing",
            ", ".join(left),
        )
        return done

    def _stop(self) -> None:
        try:
            result = self._snap("stop", "--disable", SNAP)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SnapError(f"cannot stop the {SNAP} snap: {e}") from e
        if result.returncode != 0:
            reason = (result.stderr or result.stdout).strip().splitlines()
            raise SnapError(
                f"cannot stop the {SNAP} snap: {reason[-1] if reason else 'snap stop failed'}; "
                f"stop it by hand (sudo snap stop --disable {SNAP}); the charm tries again "
                "at every hook"
            )

    def _carry_identity(self, certificate: Path, key: Path) -> bool:
        if certificate.exists() or key.exists():
            return False
        try:
            cert_pem = (self.common / "certs/server.crt").read_bytes()
            key_pem = (self.common / "certs/server.key").read_bytes()
        except OSError as e:
            logger.warning("cannot read the %s snap's server identity: %s", SNAP, e)
            return False
        if not cert_pem.strip() or not key_pem.strip():
            return False
        # The key first: a certificate alone would make the daemon generate a new pair.
        write_private(key, key_pem)
        write_private(certificate, cert_pem)
        return True

    def _has_trust(self) -> bool:
        for role in ("clients", "publishers"):
            directory = self.common / "certs" / role
            try:
                if any(directory.iterdir()):
                    return True
            except OSError:
                continue
        return False
