"""The operator's actions: trust a client by hand, list and revoke them, show the server,
back the registry up and restore it.

The trust actions change the trust store only, through the daemon's own `aar trust`
(`workload.py`), and never restart or reconfigure the daemon: applying config is the
reconcile's job. `backup` runs `aar backup` beside the serving daemon; `restore` is the one
action that stops the daemon, because `aar restore` needs it stopped, and starts it again;
in between, the charm makes the restored server identity the application's one
(`identity.py`) or, on a unit other than the leader, puts the application's back.
What they need from the charm (the running config, the advertised address) is passed in,
so this module depends on the workload, never on the charm.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import ops

import aar_ext
from state import ENDPOINTS
from workload import Workload, WorkloadError


class Actions(ops.Object):
    """Handles the actions of actions.yaml for the charm that creates it."""

    def __init__(
        self,
        charm: ops.CharmBase,
        workload: Workload,
        running_config: Callable[[], dict | None],
        address: Callable[[], str],
        restored: Callable[[], str] = lambda: "",
    ):
        super().__init__(charm, "actions")
        self.workload = workload
        self.running_config = running_config
        self.address = address
        # Called after a restore, the daemon still stopped: the charm makes the server
        # identity the application's one again and says what it did ("" for nothing).
        self.restored = restored
        observe = charm.framework.observe
        observe(charm.on.list_clients_action, self._on_list_clients)
        observe(charm.on.revoke_client_action, self._on_revoke_client)
        observe(charm.on.get_certificate_action, self._on_get_certificate)
        observe(charm.on.add_client_action, self._on_add_client)
        observe(charm.on.backup_action, self._on_backup)
        observe(charm.on.restore_action, self._on_restore)

    def _on_list_clients(self, event: ops.ActionEvent) -> None:
        revoked = bool(event.params.get("revoked", False))
        try:
            certs = self.workload.revoked() if revoked else self.workload.trusted()
        except WorkloadError as e:
            event.fail(f"cannot read the trust store: {e}")
            return
        results: dict = {"count": len(certs)}
        if certs:
            results["certificates"] = {
                cert["fingerprint"]: (
                    {
                        "subject": cert.get("subject") or "-",
                        "revoked-at": cert.get("revoked_at", ""),
                    }
                    if revoked
                    else {
                        "role": cert["role"],
                        "origin": cert.get("origin") or "-",
                        "subject": cert.get("subject") or "-",
                        "expires": cert.get("not_after") or "-",
                        "added": cert.get("added_at") or "-",
                    }
                )
                for cert in certs
            }
        event.set_results(results)

    def _on_revoke_client(self, event: ops.ActionEvent) -> None:
        fingerprint = str(event.params.get("fingerprint", "")).strip()
        if not fingerprint:
            event.fail(
                "pass the certificate's fingerprint: juju run aar/0 revoke-client "
                "fingerprint=<sha256> (see the list-clients action)"
            )
            return
        try:
            message = self.workload.revoke(fingerprint)
        except WorkloadError as e:
            event.fail(str(e))
            return
        event.set_results({"message": message})

    def _on_get_certificate(self, event: ops.ActionEvent) -> None:
        try:
            server = aar_ext.server_certificate(self.workload.paths.config_file)
        except (aar_ext.ConfigError, aar_ext.CertificateError) as e:
            event.fail(f"cannot read the server certificate: {e}")
            return
        except OSError:
            server = None
        running = self.running_config()
        if server is None or running is None:
            event.fail(
                "the registry has not started yet, so it has no certificate: "
                "check the unit's status (juju status aar)"
            )
            return
        event.set_results(
            {
                "certificate": server["pem"],
                "fingerprint": server["fingerprint"],
                "expires": server["not_after"],
                "address": f"{self.address()}:{running['port']}",
            }
        )

    def _on_add_client(self, event: ops.ActionEvent) -> None:
        pem = str(event.params.get("certificate", ""))
        role = str(event.params.get("role", "client"))
        if role not in ENDPOINTS:
            event.fail(f"role must be client or publisher, not {role!r}")
            return
        try:
            info = aar_ext.parse_certificate(pem, "the certificate parameter")
        except aar_ext.CertificateError as e:
            event.fail(str(e))
            return
        if self.running_config() is None:
            event.fail("the registry is not configured yet: check juju status aar")
            return
        try:
            message = self.workload.trust(pem, role, "action add-client")
        except WorkloadError as e:
            event.fail(str(e))
            return
        event.set_results({"fingerprint": info["fingerprint"], "role": role, "message": message})

    def _on_backup(self, event: ops.ActionEvent) -> None:
        blobs = not bool(event.params.get("no-blobs", False))
        if self.running_config() is None:
            event.fail("the registry is not configured yet, so there is nothing to back up")
            return
        given = str(event.params.get("path") or "").strip()
        try:
            if given:
                path = _absolute(given)
            else:
                path = self.workload.new_backup_path(datetime.datetime.now(datetime.timezone.utc))
            event.log(f"writing the backup to {path}")
            summary = self.workload.backup(path, blobs=blobs)
        except (ValueError, OSError, WorkloadError) as e:
            event.fail(f"backup failed: {e}")
            return
        event.set_results({"path": str(path), "size": path.stat().st_size, "summary": summary})

    def _on_restore(self, event: ops.ActionEvent) -> None:
        force = bool(event.params.get("force", False))
        try:
            path = _absolute(str(event.params.get("path") or "").strip())
        except ValueError as e:
            event.fail(str(e))
            return
        if not path.is_file():
            event.fail(
                f"there is no backup file at {path} on this unit: copy it there first, "
                "e.g. juju scp aar-0.backup aar/1:/tmp/"
            )
            return
        if self.running_config() is None:
            event.fail("the registry is not configured yet: check juju status aar")
            return
        was_running = self.workload.is_running()
        if was_running:
            event.log("stopping the registry to restore")
            self.workload.stop()
        failure = ""
        report = ""
        identity = ""
        try:
            try:
                report = self.workload.restore(path, force=force)
            except WorkloadError as e:
                failure = f"restore failed: {e}".replace("pass --force", "pass force=true")
            # Even a restore cut short may have put the backup's server identity back.
            try:
                identity = self.restored()
            except OSError as e:
                failure = "; ".join(
                    m for m in (failure, f"the server identity could not be settled: {e}") if m
                )
        finally:
            if was_running:
                event.log("starting the registry again")
                try:
                    self.workload.start()
                except WorkloadError as e:
                    failure = "; ".join(
                        m for m in (failure, f"the registry did not start again: {e}") if m
                    )
        if identity:
            event.log(identity)
        if failure:
            event.fail(failure)
            return
        event.set_results({"summary": report, **({"identity": identity} if identity else {})})


def _absolute(given: str) -> Path:
    """The file an action parameter names; relative paths would depend on the charm's cwd."""
    if not given:
        raise ValueError("pass the backup file: path=/path/to/file.backup")
    if given == "-":
        raise ValueError("an action cannot stream a backup: pass a file on the unit as path")
    path = Path(given)
    if not path.is_absolute():
        raise ValueError(f"path must be absolute (a file on the unit), not {given!r}")
    return path
