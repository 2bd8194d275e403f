"""A unit of the built .charm run without Juju: unpacked, dispatched, observed.

`Unit` unpacks the archive the way Juju does, puts the stand-ins of `standins/hooktool.py`
first on PATH, and runs the charm's real `./dispatch` with the environment the Juju agent
gives a hook or an action. The model (config, relations, network) is a JSON file the test
edits between hooks; the stand-ins read it and record what the charm wrote back.

`Ams` is an AMS unit's registry client: real certificates, real mutual TLS with Python's
`ssl`, the server pinned by the fingerprint the charm published (as AMS pins
`registry.fingerprint`), the HTTP API of docs/API.md.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import yaml

HOOKTOOL = Path(__file__).parent / "standins" / "hooktool.py"
TOOLS = [
    "config-get",
    "is-leader",
    "relation-ids",
    "relation-list",
    "relation-get",
    "relation-set",
    "network-get",
    "status-set",
    "status-get",
    "juju-log",
    "open-port",
    "close-port",
    "opened-ports",
    "application-version-set",
    "goal-state",
    "action-get",
    "action-set",
    "action-fail",
    "action-log",
    "systemctl",
    "journalctl",
    "pro",
]


class HookFailed(AssertionError):
    pass


class Unit:
    """One unit of the charm, `aar/0`, on a scratch machine under `root`."""

    def __init__(self, charm_file: Path, root: Path, name: str = "aar/0"):
        self.name = name
        self.charm_dir = root / "charm"
        self.bin = root / "bin"
        self.state = root / "juju"
        self.sysroot = root / "sysroot"
        for d in (self.charm_dir, self.bin, self.state, self.sysroot):
            d.mkdir(parents=True)
        with zipfile.ZipFile(charm_file) as archive:
            for info in archive.infolist():
                path = Path(archive.extract(info, self.charm_dir))
                mode = info.external_attr >> 16
                if mode:
                    path.chmod(mode & 0o777)
        for tool in TOOLS:
            wrapper = self.bin / tool
            wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {HOOKTOOL} {tool} "$@"\n')
            wrapper.chmod(0o755)
        options = yaml.safe_load((self.charm_dir / "config.yaml").read_text())["options"]
        self.save(
            {
                "leader": True,
                "config": {k: v.get("default") for k, v in options.items()},
                "relations": {},
                "network": {"default": "127.0.0.1", "relations": {}},
                "ports": [],
                "action": {"params": {}, "results": {}, "failed": None},
            }
        )
        self._next_relation = 1

    # -- the model -----------------------------------------------------------------------

    def load(self) -> dict:
        return json.loads((self.state / "model.json").read_text())

    def save(self, model: dict) -> None:
        (self.state / "model.json").write_text(json.dumps(model, indent=1))

    def configure(self, **options) -> None:
        model = self.load()
        model["config"].update(options)
        self.save(model)

    @property
    def status(self) -> tuple[str, str]:
        status = self.load().get("unit_status", {})
        return status.get("status", ""), status.get("message", "")

    def add_relation(self, endpoint: str, remote_app: str, ingress: str | None = None) -> int:
        model = self.load()
        rid = self._next_relation
        self._next_relation += 1
        model["relations"][str(rid)] = {
            "endpoint": endpoint,
            "remote_app": remote_app,
            "units": {},
            "local_unit": {},
            "local_app": {},
            "remote_app_data": {},
        }
        if ingress:
            model["network"]["relations"][str(rid)] = ingress
        self.save(model)
        self.dispatch(f"{endpoint}-relation-created", relation=rid)
        return rid

    def relation(self, rid: int) -> dict:
        return self.load()["relations"][str(rid)]

    def join(self, rid: int, unit: str, data: dict) -> None:
        """A remote unit enters the relation and sets its data, as Juju reports it."""
        model = self.load()
        model["relations"][str(rid)]["units"][unit] = data
        self.save(model)
        self.dispatch(
            f"{self.relation(rid)['endpoint']}-relation-joined", relation=rid, remote_unit=unit
        )
        self.dispatch(
            f"{self.relation(rid)['endpoint']}-relation-changed", relation=rid, remote_unit=unit
        )

    def depart(self, rid: int, unit: str) -> None:
        endpoint = self.relation(rid)["endpoint"]
        self.dispatch(
            f"{endpoint}-relation-departed", relation=rid, remote_unit=unit, departing=unit
        )
        model = self.load()
        del model["relations"][str(rid)]["units"][unit]
        self.save(model)

    # -- running the charm ---------------------------------------------------------------

    def dispatch(
        self,
        hook: str,
        *,
        relation: int | None = None,
        remote_unit: str | None = None,
        departing: str | None = None,
        action: str | None = None,
    ) -> subprocess.CompletedProcess:
        venv_bin = str(Path(sys.prefix) / "bin")
        path = [p for p in os.environ.get("PATH", "").split(":") if p and p != venv_bin]
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("JUJU_", "PYTHON", "VIRTUAL_ENV"))
        }
        env.update(
            PATH=":".join([str(self.bin), *path]),
            FAKE_JUJU_STATE=str(self.state),
            AAR_CHARM_SYSROOT=str(self.sysroot),
            JUJU_VERSION="3.6.4",
            JUJU_UNIT_NAME=self.name,
            JUJU_MODEL_NAME="registry",
            JUJU_MODEL_UUID="00000000-0000-4000-8000-000000000000",
            JUJU_MACHINE_ID="0",
            JUJU_CHARM_DIR=str(self.charm_dir),
            JUJU_DISPATCH_PATH=f"actions/{action}" if action else f"hooks/{hook}",
        )
        if action:
            env.update(JUJU_ACTION_NAME=action, JUJU_ACTION_UUID=str(uuid.uuid4()))
        else:
            env["JUJU_HOOK_NAME"] = hook
        if relation is not None:
            rel = self.relation(relation)
            env.update(
                JUJU_RELATION=rel["endpoint"],
                JUJU_RELATION_ID=f"{rel['endpoint']}:{relation}",
                JUJU_REMOTE_APP=rel["remote_app"],
            )
        if remote_unit:
            env["JUJU_REMOTE_UNIT"] = remote_unit
        if departing:
            env["JUJU_DEPARTING_UNIT"] = departing
        result = subprocess.run(
            [str(self.charm_dir / "dispatch")],
            cwd=self.charm_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        with (self.state / "dispatch.log").open("a") as log:
            log.write(f"== {env['JUJU_DISPATCH_PATH']} rc={result.returncode}\n")
            log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise HookFailed(f"{env['JUJU_DISPATCH_PATH']} failed:\n{result.stderr[-4000:]}")
        return result

    def hook(self, name: str) -> None:
        self.dispatch(name)

    def run_action(self, name: str, **params) -> tuple[dict, str | None]:
        model = self.load()
        model["action"] = {"params": params, "results": {}, "failed": None}
        self.save(model)
        self.dispatch(name, action=name)
        action = self.load()["action"]
        return action["results"], action["failed"]

    def broken(self, rid: int) -> None:
        endpoint = self.relation(rid)["endpoint"]
        model = self.load()
        model["relations"][str(rid)]["broken"] = True
        self.save(model)
        self.dispatch(f"{endpoint}-relation-broken", relation=rid)
        model = self.load()
        del model["relations"][str(rid)]
        self.save(model)

    # -- what the unit did ---------------------------------------------------------------

    def daemon_pid(self) -> int | None:
        try:
            pid = int((self.state / "aar.pid").read_text())
        except FileNotFoundError:
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return None
        # An exited daemon stays a zombie until its adoptive parent reaps it.
        return None if stat.rsplit(")", 1)[1].split()[0] == "Z" else pid

    def calls(self) -> list[list[str]]:
        lines = (self.state / "calls.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def everything_said(self) -> str:
        """All the unit let out: logs, statuses, relation data, action results, commands."""
        parts = []
        for name in ("juju-log.txt", "journal.log", "calls.jsonl", "model.json", "dispatch.log"):
            path = self.state / name
            if path.exists():
                text = path.read_text()
                if name == "model.json":
                    model = json.loads(text)
                    # Juju's copy of the config, and the stand-in subscription service's
                    # list of valid tokens, are inputs, not what the unit let out.
                    model.pop("config")
                    model.pop("pro", None)
                    text = json.dumps(model)
                parts.append(text)
        return "\n".join(parts)

    def stop_daemon(self) -> None:
        """Clean-up for a failed test: end the daemon this unit started, by its pid."""
        pid = self.daemon_pid()
        if pid:
            os.kill(pid, 15)


class Ams:
    """An AMS unit's registry client over mutual TLS, pinning the registry's fingerprint."""

    def __init__(self, cert: Path, key: Path, host: str, port: int, fingerprint: str):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # AMS trusts the registry by fingerprint, not by a CA: the pin is checked below.
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.context.load_cert_chain(cert, key)
        self.fingerprint = fingerprint
        self.connection = http.client.HTTPSConnection(host, port, context=self.context, timeout=30)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        deadline = time.monotonic() + 15
        while True:
            try:
                self.connection.request(method, path, body=body, headers=headers or {})
                response = self.connection.getresponse()
                data = response.read()
                break
            except (ConnectionError, OSError):
                # The daemon may still be binding right after a (re)start.
                self.connection.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        der = self.connection.sock.getpeercert(binary_form=True)
        assert hashlib.sha256(der).hexdigest() == self.fingerprint, "registry pin mismatch"
        return response.status, response.headers, data

    def json(self, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
        raw = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})} if raw else headers
        status, _, data = self.request(method, path, raw, hdrs)
        return status, json.loads(data) if data else {}

    def upload(self, image: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(image).hexdigest()
        status, headers, data = self.request(
            "POST", "/1.0/uploads", b"", {"X-AAR-Digest": digest, "X-AAR-Size": str(len(image))}
        )
        assert status in (200, 201), (status, data)
        if json.loads(data)["metadata"]["complete"]:
            return digest
        status, _, data = self.request(
            "PATCH",
            headers["Location"],
            image,
            {"Upload-Offset": "0", "Content-Type": "application/octet-stream"},
        )
        assert status == 200, (status, data)
        assert json.loads(data)["metadata"]["complete"] is True
        return digest

    def close(self) -> None:
        self.connection.close()
