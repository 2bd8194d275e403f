"""The operator's actions: trust a client by hand, list and revoke them, show the server.

They change the trust store only, through the daemon's own `aar trust` (`workload.py`),
and never restart or reconfigure the daemon: applying config is the reconcile's job. What
they need from the charm (the running config, the advertised address) is passed in, so
this module depends on the workload, never on the charm.
"""

from __future__ import annotations

from collections.abc import Callable

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
    ):
        super().__init__(charm, "actions")
        self.workload = workload
        self.running_config = running_config
        self.address = address
        observe = charm.framework.observe
        observe(charm.on.list_clients_action, self._on_list_clients)
        observe(charm.on.revoke_client_action, self._on_revoke_client)
        observe(charm.on.get_certificate_action, self._on_get_certificate)
        observe(charm.on.add_client_action, self._on_add_client)

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
