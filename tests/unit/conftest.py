"""Unit-test fixtures: a stateful fake of `workload.Workload` and the charm's Context.

The fake keeps the daemon's state (config file, service, trust store, Ubuntu Pro) in memory
and on a temporary directory across several `ctx.run` calls, the way the machine would
between hooks. It validates with the real `aar_ext` module, exactly as `aar config check`
and `aar trust add` would, so a test that passes here exercises the daemon's own rules.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import pytest
from ops import testing

import aar_ext
import charm as charm_module
import workload
from certs import make_identity

TOKEN = "C1a2b3c4d5e6f7g8h9SECRETTOKEN"


class FakeWorkload:
    """The machine as the charm sees it through `workload.Workload`."""

    def __init__(self, root: Path):
        self.paths = workload.Paths(root)
        self.running = False
        self.starts = 0
        self.restarts = 0
        self.stops = 0
        self.installs = 0
        self.config_writes = 0
        self.binary_changes_on_install = True
        self.reject_config: str | None = None
        self.fail_start: str | None = None
        self.trust_store: dict[str, dict] = {}
        self.revoked_store: dict[str, dict] = {}
        self.trust_changes: list[tuple[str, str]] = []
        self.pro_installed = False
        self.pro_rejects: dict[str, str] = {}
        self.pro_record: dict = {}
        self.pro_attaches = 0
        # Network interfaces and their IPv4 address ("" for none), for public_interface.
        self.interfaces = {"lo": "127.0.0.1", "eth0": "192.0.2.0"}
        # What `aar status --format json` prints; None: the command fails (a daemon
        # without it, or one that does not answer).
        self.holds: dict | None = None

    # install ---------------------------------------------------------------------------

    def install(self, binary: Path) -> bool:
        self.installs += 1
        self.paths.binary.parent.mkdir(parents=True, exist_ok=True)
        first = not self.paths.binary.exists()
        self.paths.binary.write_text("fake aar binary")
        self.paths.state_directory.mkdir(parents=True, exist_ok=True)
        return first or self.binary_changes_on_install

    def version(self) -> str:
        return aar_ext.version()

    # config ----------------------------------------------------------------------------

    def current_config(self) -> str | None:
        try:
            return self.paths.config_file.read_text()
        except FileNotFoundError:
            return None

    def ensure_config(self, text: str) -> bool:
        if self.current_config() == text:
            return False
        aar_ext.describe_config(text)  # what `aar config check` runs
        if self.reject_config:
            raise workload.ConfigRejected(self.reject_config)
        self.paths.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.paths.config_file.write_text(text)
        self.config_writes += 1
        return True

    # service ---------------------------------------------------------------------------

    def _generate_certificate(self) -> None:
        # As the daemon does: a new pair only when neither file exists.
        running = aar_ext.describe_config(self.current_config())
        cert, key = Path(running["certificate"]), Path(running["key"])
        if not cert.exists() and not key.exists():
            cert.parent.mkdir(parents=True, exist_ok=True)
            pair = make_identity("aar-server")
            key.write_text(pair.key_pem)
            cert.write_text(pair.cert_pem)

    def is_running(self) -> bool:
        return self.running

    def start(self) -> None:
        self.starts += 1
        if self.fail_start:
            self.running = False
            return
        self._generate_certificate()
        self.running = True

    def restart(self) -> None:
        self.restarts += 1
        self.running = not self.fail_start

    def stop(self) -> None:
        if self.running:
            self.stops += 1
        self.running = False

    def wait_ready(self, certificate: Path, timeout: float = 30.0) -> bool:
        return self.running and certificate.exists()

    def failure_reason(self) -> str:
        return self.fail_start or ""

    def registry_status(self) -> dict:
        if self.holds is None:
            raise workload.WorkloadError("aar --config /etc/aar/aar.yaml failed: no status")
        return dict(self.holds)

    # trust -----------------------------------------------------------------------------

    def trusted(self) -> list[dict]:
        return [dict(c) for c in self.trust_store.values()]

    def revoked(self) -> list[dict]:
        return [dict(c) for c in self.revoked_store.values()]

    def trust(self, pem: str, role: str, origin: str) -> str:
        try:
            info = aar_ext.parse_certificate(pem, "standard input")
        except aar_ext.CertificateError as e:
            raise workload.TrustError(str(e)) from None
        fp = info["fingerprint"]
        if fp in self.revoked_store:
            raise workload.TrustError(f"certificate {fp} was revoked")
        existing = self.trust_store.get(fp)
        if existing and existing["role"] == role:
            return f"{fp} is already trusted as {role}; nothing changed"
        self.trust_changes.append(("add", fp))
        if existing:
            existing.update(role=role, origin=origin)
            return f"changed {fp} to {role}"
        self.trust_store[fp] = {
            "fingerprint": fp,
            "role": role,
            "subject": info["subject"],
            "not_after": info["not_after"],
            "origin": origin,
            "added_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        }
        return f"trusted {fp} as {role}"

    def _find(self, prefix: str) -> str:
        hits = [fp for fp in self.trust_store if fp.startswith(prefix.lower())]
        if len(hits) != 1:
            raise workload.TrustError(
                f"no trusted certificate has a fingerprint starting with {prefix}"
            )
        return hits[0]

    def untrust(self, fingerprint: str) -> str:
        fp = self._find(fingerprint)
        self.trust_changes.append(("remove", fp))
        del self.trust_store[fp]
        return f"removed {fp}"

    def revoke(self, fingerprint: str) -> str:
        fp = self._find(fingerprint)
        self.trust_changes.append(("revoke", fp))
        cert = self.trust_store.pop(fp)
        self.revoked_store[fp] = {
            "fingerprint": fp,
            "subject": cert["subject"],
            "revoked_at": "2026-01-01T00:00:00Z",
        }
        return f"revoked {fp} permanently"

    # network ---------------------------------------------------------------------------

    def interface_address(self, name: str) -> str:
        if name not in self.interfaces:
            raise workload.WorkloadError(workload.no_such_interface(name, list(self.interfaces)))
        if not self.interfaces[name]:
            raise workload.WorkloadError(workload.no_ipv4_address(name))
        return self.interfaces[name]

    # Ubuntu Pro ------------------------------------------------------------------------

    def pro_available(self) -> bool:
        return self.pro_installed

    def pro_state(self, token: str) -> tuple[bool, str]:
        digest = hashlib.sha256(token.encode()).hexdigest()
        if self.pro_record.get("token_sha256") != digest:
            return (False, "")
        return (not self.pro_record["error"], self.pro_record["error"])

    def pro_attach(self, token: str) -> None:
        self.pro_attaches += 1
        error = self.pro_rejects.get(token, "")
        self.pro_record = {
            "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
            "error": error.replace(token, "[redacted]"),
        }
        if error:
            raise workload.ProAttachError(self.pro_record["error"])


@pytest.fixture
def fake(tmp_path, monkeypatch) -> FakeWorkload:
    """The machine, shared by every hook a test runs."""
    machine = FakeWorkload(tmp_path / "sysroot")
    monkeypatch.setattr(charm_module, "Workload", lambda: machine)
    return machine


@pytest.fixture
def ctx(fake) -> testing.Context:
    return testing.Context(charm_module.AarCharm)


@pytest.fixture(scope="session")
def ams():
    """AMS units' certificates, by unit name."""
    return {name: make_identity(name) for name in ("ams/0", "ams/1", "ams-east/0", "ams-west/0")}


def state_dir(fake: FakeWorkload) -> str:
    return str(fake.paths.state_directory)


def client_relation(*units, endpoint="client", app="ams-east", relation_id=None, modes=None):
    """A relation whose remote units sent their certificate and mode."""
    modes = modes or {}
    data = {}
    for index, identity in enumerate(units):
        data[index] = {
            "certificate": identity.cert_pem,
            "mode": modes.get(index, endpoint),
        }
    kwargs = {"id": relation_id} if relation_id is not None else {}
    return testing.Relation(
        endpoint=endpoint, interface="aar", remote_app_name=app, remote_units_data=data, **kwargs
    )


def deployed(ctx, fake, **config) -> testing.State:
    """install → config-changed (with a token) → start, on the leader, as Juju runs them."""
    options = {"ua_token": TOKEN, **config}
    state = testing.State(leader=True, config=options)
    for event in (ctx.on.install(), ctx.on.config_changed(), ctx.on.start()):
        state = ctx.run(event, state)
    return state
