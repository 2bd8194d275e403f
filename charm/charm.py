#!/usr/bin/env python3
"""The aar machine charm: Juju events in, the daemon configured and trusted out.

Every event that can change what the unit should do runs the same `_reconcile`, which
reads the whole of `juju config` and both relations and converges the machine towards them
(install, config file, Ubuntu Pro, trust store, service, relation data). Decisions live in
`state.py` (backed by the daemon's own Rust code through `aar_ext`), machine work in
`workload.py`; this module only speaks Juju. Status is computed in one place,
`_on_collect_status`, from the issues the reconcile found.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import ops

import aar_ext
from state import (
    ENDPOINTS,
    TOKEN_HINT,
    CharmConfig,
    InvalidConfig,
    Options,
    RemoteUnit,
    active_message,
    plan_trust,
)
from workload import (
    RELATION_ORIGIN_PREFIX,
    ConfigRejected,
    ProAttachError,
    TrustError,
    Workload,
    WorkloadError,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Leaving:
    """What the event being handled takes away: it must no longer count.

    A relation is still listed in its own relation-broken hook, and a departing unit may
    still be listed in relation-departed; trusting or publishing to either would undo the
    very event the charm is handling.
    """

    broken: int | None = None  # the id of the relation being broken
    departing: tuple[int, str] | None = None  # (relation id, unit name)

    @classmethod
    def of(cls, event: ops.EventBase) -> Leaving:
        if isinstance(event, ops.RelationBrokenEvent):
            return cls(broken=event.relation.id)
        if isinstance(event, ops.RelationDepartedEvent) and event.departing_unit:
            return cls(departing=(event.relation.id, event.departing_unit.name))
        return cls()


class AarCharm(ops.CharmBase):
    """Runs the Anbox Application Registry and trusts the AMS units related to it."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.workload = Workload()
        # The statuses found by this dispatch's reconcile; None when no reconcile ran (an
        # action), in which case collect-status evaluates without changing anything.
        self._issues: list[ops.StatusBase] | None = None
        # The relation or unit this dispatch's event removes; nothing for other events.
        self._leaving = Leaving()
        # `location`, or what the deprecated `public_interface` resolves to; once per dispatch.
        self._location_value: str | None = None
        events = [
            self.on.install,
            self.on.config_changed,
            self.on.start,
            self.on.upgrade_charm,
            self.on.update_status,
            self.on.leader_elected,
        ]
        for endpoint in ENDPOINTS:
            events += [
                self.on[endpoint].relation_joined,
                self.on[endpoint].relation_changed,
                self.on[endpoint].relation_departed,
                self.on[endpoint].relation_broken,
            ]
        for event in events:
            framework.observe(event, self._on_reconcile)
        framework.observe(self.on.stop, self._on_stop)
        framework.observe(self.on.remove, self._on_stop)
        framework.observe(self.on.collect_unit_status, self._on_collect_status)
        framework.observe(self.on.list_clients_action, self._on_list_clients)
        framework.observe(self.on.revoke_client_action, self._on_revoke_client)
        framework.observe(self.on.get_certificate_action, self._on_get_certificate)
        framework.observe(self.on.add_client_action, self._on_add_client)

    @functools.cached_property
    def _options(self) -> Options:
        """`juju config aar`, read once per dispatch: the one place the charm reads it."""
        return Options.read(self.config, str(self.workload.paths.state_directory))

    # -- reconcile -----------------------------------------------------------------------

    def _on_reconcile(self, event: ops.EventBase) -> None:
        self._leaving = Leaving.of(event)
        self._issues = self._converge(event, apply=True)

    def _on_stop(self, _event: ops.EventBase) -> None:
        # The data directory, trust store and config stay: a new unit or a redeploy on this
        # machine picks them up again.
        self.workload.stop()
        kept = self.workload.paths.state_directory
        self._issues = [ops.MaintenanceStatus(f"stopped; data kept in {kept}")]

    def _converge(self, event: ops.EventBase | None, *, apply: bool) -> list[ops.StatusBase]:
        """Bring the machine in line with config and relations; return what is wrong.

        With `apply=False` nothing is changed: the result is what the unit's status should
        say now (used after actions, which must not restart anything).
        """
        issues: list[ops.StatusBase] = []
        workload = self.workload
        state_directory = str(workload.paths.state_directory)

        binary_changed = False
        if apply and (
            isinstance(event, (ops.InstallEvent, ops.UpgradeCharmEvent))
            or not workload.paths.binary.exists()
        ):
            try:
                binary_changed = workload.install(self.charm_dir / "bin" / "aar")
            except WorkloadError as e:
                return [ops.BlockedStatus(f"cannot install the daemon: {e}")]
        if apply:
            try:
                self.unit.set_workload_version(workload.version())
            except WorkloadError as e:
                logger.warning("cannot read the daemon's version: %s", e)

        if apply and isinstance(event, (ops.ConfigChangedEvent, ops.UpgradeCharmEvent)):
            self._warn_deprecated_options()
        config = self._options.config
        if self._options.invalid:
            issues.append(ops.BlockedStatus(self._options.invalid))

        running = self._running_config()
        storage = config.storage if config else (running or {}).get("storage", {"kind": "fs"})

        if config is not None and not self._options.ua_token:
            issues.append(ops.BlockedStatus(f"set the Ubuntu Pro token: {TOKEN_HINT}"))
        elif config is not None and workload.pro_available():
            issues += self._ensure_pro(self._options.ua_token, event, apply=apply)

        if storage.get("kind") != "s3" and not self.unit.is_leader():
            if apply:
                workload.stop()
                self.unit.set_ports()
                self._clear_relation_data()
            return [
                *issues,
                ops.BlockedStatus(
                    "filesystem storage serves from one unit only (the leader); "
                    "configure S3 storage to run several (juju config aar -f config.yaml) "
                    f"or remove this one (juju remove-unit {self.unit.name})"
                ),
            ]

        config_changed = False
        if config is not None and apply:
            try:
                text = config.render(state_directory, self._advertise(config))
                config_changed = workload.ensure_config(text)
            except InvalidConfig as e:
                issues.append(ops.BlockedStatus(str(e)))
            except ConfigRejected as e:
                issues.append(
                    ops.BlockedStatus(
                        f"the daemon refused the rendered config ({e}); the previous config "
                        "is kept: check juju config aar and the charm revision"
                    )
                )
            running = self._running_config()

        if running is None:
            # Nothing was ever configured: no trust store or service to manage yet.
            return issues or [ops.WaitingStatus("waiting for a valid configuration")]

        issues += self._reconcile_trust(apply=apply)

        # An invalid config leaves the last good one running, so whether to serve depends
        # only on the token having been set.
        serving = bool(self._options.ua_token)
        if serving:
            issues += self._ensure_service(
                running, restart=config_changed or binary_changed, apply=apply
            )
        if apply:
            # Only a serving unit opens its port; a changed port closes the old one.
            self.unit.set_ports(*([running["port"]] if serving else []))
            self._publish(running)
        return issues

    def _running_config(self) -> dict | None:
        """What the config file on disk says (the daemon's view), or None without one."""
        text = self.workload.current_config()
        if text is None:
            return None
        try:
            return aar_ext.describe_config(text)
        except aar_ext.ConfigError as e:
            logger.warning("the current config file is invalid: %s", e)
            return None

    def _ensure_pro(
        self, token: str, event: ops.EventBase | None, *, apply: bool
    ) -> list[ops.StatusBase]:
        attached, error = self.workload.pro_state(token)
        if attached:
            return []
        # A new token is tried at once; a refused one again at each update-status, in case
        # the refusal was the network's rather than the token's.
        retry = not error or isinstance(event, ops.UpdateStatusEvent)
        if apply and retry:
            try:
                self.workload.pro_attach(token)
                logger.info("attached the machine to Ubuntu Pro")
                return []
            except ProAttachError as e:
                error = str(e)
            except WorkloadError as e:
                error = str(e)
        if not error:
            return [ops.MaintenanceStatus("attaching the machine to Ubuntu Pro")]
        return [
            ops.BlockedStatus(
                f"Ubuntu Pro refused ua_token: {error}; set a valid token: {TOKEN_HINT}"
            )
        ]

    def _ensure_service(
        self, running: dict, *, restart: bool, apply: bool
    ) -> list[ops.StatusBase]:
        workload = self.workload
        if apply:
            try:
                if not workload.is_running():
                    workload.start()
                elif restart:
                    logger.info("restarting the daemon for its new config or binary")
                    workload.restart()
            except WorkloadError as e:
                logger.warning("%s", e)
            ready = workload.wait_ready(Path(running["certificate"]))
        else:
            ready = workload.is_running()
        if ready:
            return []
        reason = workload.failure_reason() or "it exited"
        return [
            ops.BlockedStatus(f"the aar service is not running: {reason}; see journalctl -u aar")
        ]

    # -- relations -----------------------------------------------------------------------

    def _relations(self) -> list[tuple[str, ops.Relation]]:
        """Every relation on our endpoints, with its endpoint, minus the one being broken."""
        return [
            (endpoint, relation)
            for endpoint in ENDPOINTS
            for relation in self.model.relations[endpoint]
            if relation.id != self._leaving.broken
        ]

    def _remote_units(self) -> list[RemoteUnit]:
        """Every related AMS unit's data, without the unit or relation going away."""
        return [
            RemoteUnit.from_data(endpoint, relation.id, unit.name, relation.data[unit])
            for endpoint, relation in self._relations()
            for unit in relation.units
            if (relation.id, unit.name) != self._leaving.departing
        ]

    def _reconcile_trust(self, *, apply: bool) -> list[ops.StatusBase]:
        """Make the trust store hold exactly the relations' certificates, in their roles.

        Only entries the charm added for a relation are ever removed; certificates trusted
        by hand (`aar trust add`, the add-client action) are the operator's.
        """
        workload = self.workload
        try:
            trusted = {c["fingerprint"]: c for c in workload.trusted()}
            revoked = [c["fingerprint"] for c in workload.revoked()]
        except WorkloadError as e:
            return [ops.BlockedStatus(f"cannot read the trust store: {e}")]
        plan = plan_trust(self._remote_units(), trusted.values(), revoked)
        issues = [ops.BlockedStatus(problem) for problem in plan.problems]
        if not apply:
            return issues
        for fingerprint, wanted in plan.wanted.items():
            have = trusted.get(fingerprint)
            if have is not None and have["role"] == wanted.role:
                continue
            try:
                logger.info("%s", workload.trust(wanted.pem, wanted.role, wanted.origin))
            except TrustError as e:
                issues.append(ops.BlockedStatus(f"cannot trust {wanted.unit}: {e}"))
        for fingerprint, have in trusted.items():
            if fingerprint in plan.wanted:
                continue
            if not str(have.get("origin", "")).startswith(RELATION_ORIGIN_PREFIX):
                continue
            try:
                logger.info("%s (%s is gone)", workload.untrust(fingerprint), have["origin"])
            except TrustError as e:
                issues.append(ops.BlockedStatus(f"cannot remove {fingerprint[:12]}: {e}"))
        return issues

    def _advertise(self, config: CharmConfig) -> list[str]:
        location = self._location()
        addresses = [location] if location else []
        ingress = self._ingress_address(None)
        if ingress:
            addresses.append(ingress)
        return addresses

    def _ingress_address(self, relation: ops.Relation | None) -> str:
        """The address AMS on the other side of `relation` reaches this unit at."""
        try:
            binding = self.model.get_binding(relation if relation is not None else "client")
            address = binding.network.ingress_address if binding else None
        except ops.ModelError as e:
            logger.warning("network-get failed: %s", e)
            address = None
        return str(address) if address else ""

    def _address(self, relation: ops.Relation | None) -> str:
        return self._location() or self._ingress_address(relation)

    def _location(self) -> str:
        """The address to advertise instead of the ingress address; "" for none."""
        if self._location_value is None:
            self._location_value = self._resolve_location()
        return self._location_value

    def _resolve_location(self) -> str:
        """`location`, else the IPv4 address of the deprecated `public_interface`.

        The official aar charm's `public_interface` names the interface whose address is
        the unit's public one (its server certificate is made for it): what `location`
        means here, so bundles written for that charm keep advertising the same address.
        """
        location, interface = self._options.location, self._options.public_interface
        if location or not interface:
            return location
        try:
            address = self.workload.interface_address(interface)
        except WorkloadError as e:
            # The official charm meant to fall back to the default address here too; the
            # status shows the address actually served.
            logger.warning(
                "public_interface: %s; advertising the relation's ingress address instead: "
                "set juju config aar location=<address>, or public_interface to an "
                "interface with an IPv4 address",
                e,
            )
            return ""
        return address

    def _warn_deprecated_options(self) -> None:
        """Say, when the operator acts, that `public_interface` has a replacement."""
        interface = self._options.public_interface
        if not interface:
            return
        if self._options.location:
            logger.warning(
                "public_interface is deprecated, and public_interface=%s is ignored: "
                "location is set (juju config aar --reset public_interface)",
                interface,
            )
            return
        address = self._location()
        if address:
            logger.warning(
                "public_interface is deprecated: advertising %s, the address of %s; set it "
                "as location instead (juju config aar location=%s; "
                "juju config aar --reset public_interface)",
                address,
                interface,
                address,
            )

    def _publish(self, running: dict) -> None:
        """Put this unit's certificate, fingerprint, address and port in every relation."""
        try:
            server = aar_ext.server_certificate(self.workload.paths.config_file)
        except (aar_ext.ConfigError, aar_ext.CertificateError) as e:
            logger.warning("cannot read the server certificate: %s", e)
            server = None
        if server is None:
            return
        for _, relation in self._relations():
            relation.data[self.unit].update(
                {
                    "certificate": server["pem"],
                    "fingerprint": server["fingerprint"],
                    "ip": self._address(relation),
                    "port": str(running["port"]),
                }
            )

    def _clear_relation_data(self) -> None:
        """A unit that does not serve must not be picked by AMS."""
        for _, relation in self._relations():
            data = relation.data[self.unit]
            for key in ("certificate", "fingerprint", "ip", "port"):
                data.pop(key, None)

    # -- status --------------------------------------------------------------------------

    def _on_collect_status(self, event: ops.CollectStatusEvent) -> None:
        issues = self._issues if self._issues is not None else self._converge(None, apply=False)
        if issues:
            # The reconcile lists issues most fundamental first; show that one.
            event.add_status(issues[0])
            return
        running = self._running_config()
        if running is None:
            event.add_status(ops.WaitingStatus("waiting for a valid configuration"))
            return
        try:
            trusted = self.workload.trusted()
        except WorkloadError as e:
            event.add_status(ops.BlockedStatus(f"cannot read the trust store: {e}"))
            return
        event.add_status(
            ops.ActiveStatus(
                active_message(self._address(None), running["port"], running["storage"], trusted)
            )
        )

    # -- actions -------------------------------------------------------------------------

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
        running = self._running_config()
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
                "address": f"{self._address(None)}:{running['port']}",
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
        if self._running_config() is None:
            event.fail("the registry is not configured yet: check juju status aar")
            return
        try:
            message = self.workload.trust(pem, role, "action add-client")
        except WorkloadError as e:
            event.fail(str(e))
            return
        event.set_results({"fingerprint": info["fingerprint"], "role": role, "message": message})


if __name__ == "__main__":  # pragma: no cover
    ops.main(AarCharm)
