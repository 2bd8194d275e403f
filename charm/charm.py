#!/usr/bin/env python3
"""The aar machine charm: Juju events in, the daemon configured and trusted out.

Every event that can change what the unit should do runs the same `_reconcile`, which
reads the whole of `juju config` and both relations and makes the machine match them
(install, Ubuntu Pro, config file, trust store, service, relation data). It changes things
and nothing else: the status is collected afterwards in one place, `_unit_status`, from the
config, the relations and the machine as they then are, plus the few failures only the
applying dispatch knows about (`Findings`). An action applies nothing, so its status is
the same evaluation with nothing found.

Decisions live in `state.py` (backed by the daemon's own Rust code through `aar_ext`),
machine work in `workload.py`; this module only speaks Juju. It is longer than the
others because applying and status-collecting read the same view of config, relations and
machine; split apart, each half would have to rebuild that view. The rules that do not
need that view already live elsewhere (`state.py`, `secret_options.py`, `cos.py`,
`snap_migration.py`, `identity.py`, `actions.py`).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import ops

import aar_ext
import cos
import identity
from actions import Actions
from secret_options import STORAGE_OPTION, TOKEN_OPTION, SecretOption, unreadable
from snap_migration import SnapRegistry
from state import (
    ENDPOINTS,
    TOKEN_HINT,
    InvalidConfig,
    Options,
    RemoteUnit,
    TrustPlan,
    active_message,
    holdings,
    plan_trust,
    public_interface_notice,
)
from workload import ConfigRejected, TrustError, Workload, WorkloadError

logger = logging.getLogger(__name__)

PEERS = "aar-peers"
# In the peer relation's application data: the unit whose machine holds the filesystem
# storage. Written by the leader when there is none, then changed only when that unit has
# left and another holds the data (a restored backup or the Juju storage attached there).
DATA_OWNER = "data-owner"
# What may sit in an otherwise empty storage root: a freshly made ext4 volume's directory.
EMPTY_VOLUME = {"lost+found"}


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


@dataclass
class Findings:
    """What a reconcile met that the machine does not show afterwards.

    Everything else the status says is read from the config, the relations and the machine;
    these failures are known only to the dispatch that met them.
    """

    install_failed: str = ""  # the daemon could not be installed: nothing else was tried
    pro_refused: str = ""  # attaching to Ubuntu Pro failed in this dispatch
    config_refused: str = ""  # the rendered config was refused; the previous one is kept
    # trust changes the daemon refused, or why none could be made
    trust_refused: list[str] = field(default_factory=list)
    service_ready: bool | None = None  # whether the daemon came up; None: not waited for
    identity_refused: str = ""  # the server identity could not be shared or installed


class AarCharm(ops.CharmBase):
    """Runs the Anbox Application Registry and trusts the AMS units related to it."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.workload = Workload()
        # What this dispatch's reconcile met; nothing when none ran (an action).
        self._found = Findings()
        # The relation or unit this dispatch's event removes; nothing for other events.
        self._leaving = Leaving()
        self._stopped = False
        self.snap = SnapRegistry(self.workload.paths)
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
        # The data owner arrives, or leaves, through the peer relation.
        events += [
            self.on[PEERS].relation_created,
            self.on[PEERS].relation_joined,
            self.on[PEERS].relation_changed,
            self.on[PEERS].relation_departed,
        ]
        # A collector that joins needs the data at once; nothing it sends changes it.
        events += [self.on[cos.RELATION].relation_joined, self.on[cos.RELATION].relation_changed]
        # A user secret's new revision (juju update-secret) is read and applied at once.
        events.append(self.on.secret_changed)
        for event in events:
            framework.observe(event, self._on_reconcile)
        framework.observe(self.on.stop, self._on_stop)
        framework.observe(self.on.remove, self._on_stop)
        framework.observe(self.on.collect_unit_status, self._on_collect_status)
        self.actions = Actions(
            self,
            self.workload,
            self._running_config,
            lambda: self._address(None),
            self._after_restore,
        )

    @functools.cached_property
    def _options(self) -> Options:
        """`juju config aar`, read once per dispatch: the one place the charm reads it."""
        secrets = {option: self._read_secret(option) for option in (TOKEN_OPTION, STORAGE_OPTION)}
        return Options.read(self.config, str(self.workload.paths.state_directory), secrets)

    def _read_secret(self, option: str) -> SecretOption:
        """The user secret a secret-typed option names: its latest content, or why not."""
        secret_id = str(self.config.get(option) or "").strip()
        if not secret_id:
            return SecretOption(option)
        try:
            # refresh: a user secret's observer tracks the revision it last read; the
            # operator's latest revision is the one meant.
            content = self.model.get_secret(id=secret_id).get_content(refresh=True)
        except ops.SecretNotFoundError:
            return SecretOption(
                option, secret_id, problem=unreadable(option, secret_id, self.app.name)
            )
        except ops.ModelError as e:
            # Juju's own error (permission denied and the like): it has no content to show.
            logger.warning("cannot read %s %s: %s", option, secret_id, e)
            return SecretOption(
                option, secret_id, problem=unreadable(option, secret_id, self.app.name)
            )
        return SecretOption(option, secret_id, content=dict(content))

    # -- reconcile: make the machine match the config and relations ----------------------

    def _on_reconcile(self, event: ops.EventBase) -> None:
        self._leaving = Leaving.of(event)
        self._found = self._reconcile(event)
        self._share_telemetry()

    def _on_stop(self, _event: ops.EventBase) -> None:
        # The data directory, trust store and config stay: a new unit or a redeploy on this
        # machine picks them up again.
        self.workload.stop()
        self._stopped = True

    def _reconcile(self, event: ops.EventBase) -> Findings:
        """Make the machine match the config and relations; what failed on the way.

        Without the daemon nothing else is tried; a unit that must not serve stops there;
        before any config file exists there is no trust store or service to manage.
        """
        found = Findings()
        try:
            binary_changed = self._install(event)
        except WorkloadError as e:
            found.install_failed = f"cannot install the daemon: {e}"
            return found
        if isinstance(event, (ops.ConfigChangedEvent, ops.UpgradeCharmEvent)):
            self._warn_deprecated_options()
        retry_refused = isinstance(event, ops.UpdateStatusEvent)
        found.pro_refused = self._attach_pro(retry_refused=retry_refused)
        self._record_data_owner()
        if self._must_stand_down():
            # The config is written all the same so that `aar restore` can run here when
            # the data's unit is lost (docs/charm.md, "Several units").
            found.config_refused, _ = self._write_config()
            self._stand_down()
            return found
        found.config_refused, config_changed = self._write_config()
        running = self._running_config()
        if running is None:
            return found
        found.trust_refused = self._reconcile_trust()
        replacing_snap = self._replacing_snap()
        serving = self._token_lets_serve() and not replacing_snap
        if serving:
            step = self._identity_step()
            if step.wait:
                # No unit may show AMS a fingerprint other than the application's.
                self._stand_down()
                return found
            found.identity_refused, identity_changed = self._apply_identity(step)
            restart = config_changed or binary_changed or identity_changed
            found.service_ready = self._run_service(running, restart=restart)
            if step.share_after_start and found.service_ready:
                # The names it was generated for: this dispatch's, when it wrote the config.
                names = self._advertised if self._options.config is not None else None
                found.identity_refused = self._share_disk_pair(names)
        elif replacing_snap:
            self.workload.stop()
        # Only a serving unit opens its port; a changed port closes the old one.
        self.unit.set_ports(*([running["port"]] if serving else []))
        self._publish(running)
        return found

    def _install(self, event: ops.EventBase) -> bool:
        """Install the daemon the charm carries, when new or missing; whether it changed."""
        changed = False
        if (
            isinstance(event, (ops.InstallEvent, ops.UpgradeCharmEvent))
            or not self.workload.paths.binary.exists()
        ):
            changed = self.workload.install(self.charm_dir / "bin" / "aar")
        # At every event, not only install and upgrade: a snap started again behind the
        # charm's back must not hold the port, and a stop that failed is tried again.
        self.snap.replace(*self._tls_paths())
        try:
            self.unit.set_workload_version(self.workload.version())
        except WorkloadError as e:
            logger.warning("cannot read the daemon's version: %s", e)
        return changed

    def _token_lets_serve(self) -> bool:
        """Whether the token lets this unit serve: it is set, or kept in a secret that could
        not be read this time while the registry already runs.

        A revoked or emptied token secret blocks the unit but, like an invalid
        storage_config, leaves a running registry serving; it never starts one.
        """
        if self._options.ua_token:
            return True
        return bool(self._options.token_invalid) and self.workload.is_running()

    def _attach_pro(self, *, retry_refused: bool) -> str:
        """Attach the machine to Ubuntu Pro with the token; why that failed, or "".

        A new token is tried at once; a refused one again at each update-status
        (`retry_refused`), in case the refusal was the network's rather than the token's.
        """
        token = self._options.ua_token
        if self._options.config is None or not token or not self.workload.pro_available():
            return ""
        attached, refused = self.workload.pro_state(token)
        if attached or (refused and not retry_refused):
            return ""
        try:
            self.workload.pro_attach(token)
        except WorkloadError as e:  # ProAttachError among them: the client's reason
            return str(e)
        logger.info("attached the machine to Ubuntu Pro")
        return ""

    def _tls_paths(self) -> tuple[Path, Path]:
        """The daemon's server certificate and key: as configured, else its defaults."""
        running = self._running_config()
        if running is None:
            # The port has no bearing on the paths.
            state_directory = str(self.workload.paths.state_directory)
            running = aar_ext.describe_config(aar_ext.render_config(state_directory, 3000, "", []))
        return Path(running["certificate"]), Path(running["key"])

    def _replacing_snap(self) -> bool:
        """The official charm's snap is still installed (stopped): nothing is served until
        the operator removes it, rather than an empty registry in its place."""
        return self.snap.replaced() is not None

    def _storage(self) -> dict:
        """The storage in force; with an invalid config, that of the config still running."""
        config = self._options.config
        if config is not None:
            return config.storage
        return (self._running_config() or {}).get("storage", {"kind": "fs"})

    def _filesystem_storage(self) -> bool:
        return self._storage().get("kind") != "s3"

    def _data_owner(self) -> str:
        """The unit recorded as holding the filesystem storage, or "" (none yet, or no
        peer relation yet)."""
        relation = self.model.get_relation(PEERS)
        if relation is None:
            return ""
        return relation.data[self.app].get(DATA_OWNER, "")

    def _owner_lost(self) -> bool:
        """The recorded owner is another unit that is no longer in the application."""
        owner = self._data_owner()
        relation = self.model.get_relation(PEERS)
        if not owner or owner == self.unit.name or relation is None:
            return False
        present = {unit.name for unit in relation.units}
        if self._leaving.departing and self._leaving.departing[0] == relation.id:
            present.discard(self._leaving.departing[1])
        return owner not in present

    def _holds_data(self) -> bool:
        """Whether this machine's storage root holds a registry (a restored backup, or the
        Juju storage volume attached here)."""
        root = Path(
            self._storage().get("root_directory") or self.workload.paths.state_directory / "data"
        )
        try:
            return any(entry.name not in EMPTY_VOLUME for entry in root.iterdir())
        except OSError:
            return False

    def _record_data_owner(self) -> None:
        """The leader names the unit that holds the filesystem storage, once.

        The first leader to see no owner is the owner: it is the unit that served before
        the peer relation existed. Leadership moving later changes nothing (the data stays
        on that machine). Only when the owner has left and this unit holds a registry
        itself does the record move here; without the data it stays and the status says
        what to do.
        """
        relation = self.model.get_relation(PEERS)
        if relation is None or not self.unit.is_leader() or not self._filesystem_storage():
            return
        owner = relation.data[self.app].get(DATA_OWNER, "")
        if not owner:
            relation.data[self.app][DATA_OWNER] = self.unit.name
            logger.info("the filesystem storage is on %s: it serves", self.unit.name)
        elif self._owner_lost() and self._holds_data():
            relation.data[self.app][DATA_OWNER] = self.unit.name
            logger.warning(
                "%s, which held the filesystem storage, has left; %s holds a registry and "
                "serves from now on",
                owner,
                self.unit.name,
            )

    def _must_stand_down(self) -> bool:
        """Filesystem storage serves from one unit only: whether this unit is not it.

        That unit is the recorded data owner, leader or not; before one is recorded (no
        peer relation yet), the leader, which is about to be recorded.
        """
        if not self._filesystem_storage():
            return False
        owner = self._data_owner()
        if not owner:
            return not self.unit.is_leader()
        return owner != self.unit.name

    def _stand_down(self) -> None:
        """Stop serving: no service, no open port, nothing in the relations for AMS."""
        self.workload.stop()
        self.unit.set_ports()
        self._clear_relation_data()

    def _write_config(self) -> tuple[str, bool]:
        """Render the daemon's config and install it: (why it was refused, or "", changed).

        The daemon checks the new file first; a refused one leaves the previous one running.
        """
        config = self._options.config
        if config is None:
            return "", False
        state_directory = str(self.workload.paths.state_directory)
        try:
            text = config.render(state_directory, self._advertised)
            return "", self.workload.ensure_config(text)
        except InvalidConfig as e:
            return str(e), False
        except ConfigRejected as e:
            return (
                f"the daemon refused the rendered config ({e}); the previous config "
                "is kept: check juju config aar and the charm revision"
            ), False

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

    def _run_service(self, running: dict, *, restart: bool) -> bool:
        """Start the daemon, or restart it for a new config or binary; whether it is ready."""
        try:
            if not self.workload.is_running():
                self.workload.start()
            elif restart:
                logger.info("restarting the daemon for its new config or binary")
                self.workload.restart()
        except WorkloadError as e:
            logger.warning("%s", e)
        return self.workload.wait_ready(Path(running["certificate"]))

    # -- one server identity for the application (identity.py) ---------------------------

    def _shared_identity(self) -> tuple[identity.Pair | None, str]:
        """The application's server key and certificate, or why they cannot be read.

        (None, "") when none is shared yet, or there is no peer relation to say where.
        """
        relation = self.model.get_relation(PEERS)
        secret_id = relation.data[self.app].get(identity.SECRET_ID, "") if relation else ""
        if not secret_id:
            return None, ""
        try:
            # refresh: the leader's new revision (a restored pair) is the one meant.
            content = self.model.get_secret(id=secret_id).get_content(refresh=True)
            return identity.Pair.from_content(content, secret_id), ""
        except identity.IdentityError as e:
            return None, str(e)
        except ops.SecretNotFoundError:
            return None, f"the server identity secret {secret_id} does not exist"
        except ops.ModelError as e:
            logger.warning("cannot read the server identity secret %s: %s", secret_id, e)
            return None, f"cannot read the server identity secret {secret_id}"

    def _disk_pair(self) -> tuple[identity.Pair | None, str]:
        """The server key and certificate on this machine, or why they cannot be used."""
        try:
            return identity.read_pair(*self._tls_paths()), ""
        except identity.IdentityError as e:
            return None, str(e)

    def _identity_names(self) -> list[str] | None:
        """The addresses the shared certificate was generated for; None: not known."""
        relation = self.model.get_relation(PEERS)
        text = relation.data[self.app].get(identity.NAMES, "") if relation else ""
        try:
            names = json.loads(text) if text else None
        except ValueError:
            return None
        return [str(n) for n in names] if isinstance(names, list) else None

    def _generates_identity(self) -> bool:
        """The leader's daemon is about to generate the application's certificate."""
        if not self.unit.is_leader() or self.model.get_relation(PEERS) is None:
            return False
        return self._shared_identity() == (None, "") and self._disk_pair() == (None, "")

    def _identity_step(self) -> identity.Step:
        shared, shared_problem = self._shared_identity()
        on_disk, _ = self._disk_pair()
        return identity.plan(
            leader=self.unit.is_leader(),
            peers=self.model.get_relation(PEERS) is not None,
            sole_server=self._filesystem_storage(),
            shared=shared,
            shared_problem=shared_problem,
            on_disk=on_disk,
        )

    def _apply_identity(self, step: identity.Step) -> tuple[str, bool]:
        """Install the shared pair or share the one on disk: (why it failed, or "", whether
        the pair on disk changed, so that a running daemon must restart to present it)."""
        if step.share:
            return self._share_disk_pair(None), False
        if not step.install:
            return "", False
        shared, problem = self._shared_identity()
        if shared is None:
            return problem, False
        try:
            backups = identity.install_pair(shared, *self._tls_paths())
        except OSError as e:
            return f"cannot write the server identity: {e}", False
        address = self._address(None)
        logger.info(
            "installed the application's server identity (fingerprint %s)%s",
            shared.fingerprint,
            f"; the replaced pair is kept as {', '.join(map(str, backups))}" if backups else "",
        )
        if identity.uncovered(self._identity_names(), address):
            logger.warning(
                "the application's server certificate does not name %s (it was made for "
                "%s); it is kept, since AMS pins its fingerprint (docs/charm.md: Several units)",
                address,
                ", ".join(self._identity_names() or []),
            )
        return "", True

    def _share_disk_pair(self, names: list[str] | None) -> str:
        """(Leader) make the pair on disk the application's; why that failed, or "".

        `names`: the addresses its certificate was just generated for; None for a pair
        adopted or restored, whose names the charm does not know.
        """
        relation = self.model.get_relation(PEERS)
        pair, problem = self._disk_pair()
        if relation is None or pair is None:
            return problem
        content = pair.content()
        secret = self._identity_secret(relation)
        try:
            if secret is None:
                secret = self.app.add_secret(
                    content,
                    label=identity.SECRET_LABEL,
                    description="the aar server key and certificate every unit presents",
                )
            elif secret.get_content(refresh=True) != content:
                secret.set_content(content)
            elif relation.data[self.app].get(identity.FINGERPRINT) == pair.fingerprint:
                return ""
        except ops.ModelError as e:
            logger.warning("cannot share the server identity: %s", e)
            return "cannot share the server identity with the other units (see juju debug-log)"
        relation.data[self.app][identity.SECRET_ID] = secret.id or ""
        relation.data[self.app][identity.FINGERPRINT] = pair.fingerprint
        if names is not None:
            relation.data[self.app][identity.NAMES] = json.dumps(names)
        else:
            relation.data[self.app].pop(identity.NAMES, None)
        logger.info("shared the server identity (fingerprint %s)", pair.fingerprint)
        return ""

    def _identity_secret(self, relation: ops.Relation) -> ops.Secret | None:
        """The application's identity secret, by its recorded id, else by its label."""
        secret_id = relation.data[self.app].get(identity.SECRET_ID, "")
        for lookup in ({"id": secret_id} if secret_id else None, {"label": identity.SECRET_LABEL}):
            if lookup is None:
                continue
            try:
                return self.model.get_secret(**lookup)
            except ops.SecretNotFoundError:
                continue
        return None

    def _after_restore(self) -> str:
        """After `aar restore` (daemon stopped): one identity again; what to tell the operator.

        On the leader the restored pair becomes the application's, so the other units take
        it rather than pushing the old one back. Another unit presents the application's
        pair again, the restored one kept beside it.
        """
        relation = self.model.get_relation(PEERS)
        restored, _ = self._disk_pair()
        if relation is None or restored is None:
            return ""
        shared, _ = self._shared_identity()
        if shared == restored:
            return ""
        if self.unit.is_leader():
            refused = self._share_disk_pair(None)
            if refused:
                return refused
            return (
                f"the restored server identity (fingerprint {restored.fingerprint}) is now "
                "the application's; every unit presents it from its next hook"
            )
        if shared is None:
            return ""
        backups = identity.install_pair(shared, *self._tls_paths())
        return (
            f"this unit presents the application's server identity (fingerprint "
            f"{shared.fingerprint}), not the restored one (kept as "
            f"{', '.join(map(str, backups))}); restore on the leader to make a backup's "
            "identity the application's"
        )

    # -- trust ---------------------------------------------------------------------------

    def _trust_plan(self) -> tuple[dict[str, dict], TrustPlan]:
        """The trust store's entries by fingerprint, and whom the relations ask to trust."""
        trusted = {c["fingerprint"]: c for c in self.workload.trusted()}
        revoked = [c["fingerprint"] for c in self.workload.revoked()]
        return trusted, plan_trust(self._remote_units(), trusted.values(), revoked)

    def _reconcile_trust(self) -> list[str]:
        """Make the trust store hold exactly the relations' certificates, in their roles.

        Returns the changes the daemon refused (`TrustPlan` decides which to make).
        """
        try:
            trusted, plan = self._trust_plan()
        except WorkloadError as e:
            return [f"cannot read the trust store: {e}"]
        refused = []
        for wanted in plan.to_trust(trusted):
            try:
                logger.info("%s", self.workload.trust(wanted.pem, wanted.role, wanted.origin))
            except TrustError as e:
                refused.append(f"cannot trust {wanted.unit}: {e}")
        for entry in plan.to_untrust(trusted):
            fingerprint = entry["fingerprint"]
            try:
                logger.info("%s (%s is gone)", self.workload.untrust(fingerprint), entry["origin"])
            except TrustError as e:
                refused.append(f"cannot remove {fingerprint[:12]}: {e}")
        return refused

    # -- relations and addresses ---------------------------------------------------------

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

    @functools.cached_property
    def _advertised(self) -> list[str]:
        """The addresses the server certificate is made for (the daemon reads them only
        when it generates one): `location`, this unit's address, and those the
        application's certificate was made for, so that the config stays the same once it
        is shared; while the leader is about to generate that certificate, every peer's
        address too. Worked out once per dispatch, before the daemon may generate it, so
        that the leader records the names it was made for."""
        location = self._location
        addresses = [location] if location else []
        ingress = self._ingress_address(None)
        if ingress:
            addresses.append(ingress)
        addresses += self._identity_names() or []
        relation = self.model.get_relation(PEERS)
        if relation is not None and self._generates_identity():
            for unit in relation.units:
                peer = relation.data[unit].get("ingress-address", "")
                if peer:
                    addresses.append(peer)
        return sorted(set(addresses))

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
        return self._location or self._ingress_address(relation)

    @functools.cached_property
    def _location(self) -> str:
        """The address to advertise instead of the ingress address; "" for none.

        `location`, else the IPv4 address of the deprecated `public_interface`. The official
        aar charm's `public_interface` names the interface whose address is the unit's public
        one (its server certificate is made for it): what `location` means here, so bundles
        written for that charm keep advertising the same address. Worked out once per
        dispatch.
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
        """Say, when the operator acts, that `public_interface` has a replacement, and
        which plain settings a secret overrides."""
        notice = public_interface_notice(self._options, self._location)
        if notice:
            logger.warning("%s", notice)
        for ignored in self._options.ignored:
            logger.warning("%s", ignored)

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

    # -- observability: the collector on this machine ------------------------------------

    def _serves(self) -> bool:
        """Whether this unit is meant to run the daemon now (whether or not it does)."""
        return (
            not self._found.install_failed
            and self._token_lets_serve()
            and not self._must_stand_down()
            and not self._replacing_snap()
            and self._running_config() is not None
            and not self._identity_step().wait
        )

    def _share_telemetry(self) -> None:
        """Tell the collector what to scrape and which rules and dashboards to forward."""
        relations = self.model.relations[cos.RELATION]
        if not relations:
            return
        topology = cos.Topology(
            model=self.model.name,
            model_uuid=self.model.uuid,
            application=self.app.name,
            charm=self.meta.name,
        )
        try:
            data = cos.unit_data(topology, serving=self._serves())
        except (OSError, ValueError, cos.RuleFileError) as e:
            # The files come with the charm: a broken one is the charm revision's fault,
            # and the registry itself keeps serving.
            logger.error("cannot share the charm's dashboards and rules: %s", e)
            return
        for relation in relations:
            relation.data[self.unit].update(data)

    # -- status: what is wrong and how to fix it, or what is served ----------------------

    def _on_collect_status(self, event: ops.CollectStatusEvent) -> None:
        event.add_status(self._unit_status())

    def _unit_status(self) -> ops.StatusBase:
        """The one status to show: the most fundamental issue, else what is served."""
        if self._stopped:
            return ops.MaintenanceStatus(
                f"stopped; data kept in {self.workload.paths.state_directory}"
            )
        issues = self._issues()
        return issues[0] if issues else self._serving_status()

    def _issues(self) -> list[ops.StatusBase]:
        """What is wrong, most fundamental first, each saying what to type to fix it.

        Read from the config, the relations and the machine as they are now, plus what
        this dispatch's reconcile met (`self._found`); nothing is changed.
        """
        if self._found.install_failed:
            return [ops.BlockedStatus(self._found.install_failed)]
        issues = [
            ops.BlockedStatus(message)
            for message in (self._options.token_invalid, self._options.invalid)
            if message
        ]
        issues += self._pro_issues()
        replaced = self.snap.replaced()
        if replaced is not None:
            issues.append(ops.BlockedStatus(self._snap_message(replaced.left)))
        if self._must_stand_down():
            return [*issues, ops.BlockedStatus(self._stand_down_message())]
        if self._found.config_refused:
            issues.append(ops.BlockedStatus(self._found.config_refused))
        if self._running_config() is None:
            # Nothing was ever configured: no trust store or service to look at yet.
            return issues or [ops.WaitingStatus("waiting for a valid configuration")]
        issues += self._trust_issues()
        if self._found.identity_refused:
            issues.append(ops.BlockedStatus(self._found.identity_refused))
        # An invalid config leaves the last good one running, so whether to serve depends
        # only on the token having been set.
        if self._token_lets_serve() and replaced is None:
            waiting = self._identity_step().wait
            issues += [ops.WaitingStatus(waiting)] if waiting else self._service_issues()
        return issues

    def _pro_issues(self) -> list[ops.StatusBase]:
        """No token, or the machine not (yet) attached to Ubuntu Pro with it."""
        if self._options.config is None or self._options.token_invalid:
            return []
        token = self._options.ua_token
        if not token:
            return [ops.BlockedStatus(f"set the Ubuntu Pro token: {TOKEN_HINT}")]
        if not self.workload.pro_available():
            return []
        attached, refused = self.workload.pro_state(token)
        # An attempt that failed before the client answered leaves no record to read.
        refused = self._found.pro_refused or refused
        if refused:
            return [
                ops.BlockedStatus(
                    f"Ubuntu Pro refused ua_token: {refused}; set a valid token: {TOKEN_HINT}"
                )
            ]
        if attached:
            return []
        return [ops.MaintenanceStatus("attaching the machine to Ubuntu Pro")]

    def _stand_down_message(self) -> str:
        owner = self._data_owner()
        if not owner:
            return (
                "filesystem storage serves from one unit only (the leader); configure S3 "
                "storage to run several (juju config aar -f config.yaml) or remove this one "
                f"(juju remove-unit {self.unit.name})"
            )
        if self._owner_lost():
            if self.unit.is_leader():
                return (
                    f"fs data was on {owner}, which left; restore a backup here (aar restore, "
                    "docs/charm.md: Several units) and this unit serves it"
                )
            return f"standby: fs data was on {owner}, which left; see the leader's status"
        return (
            f"standby: fs data is on {owner}; configure S3 storage to serve from every unit "
            "(juju config aar -f config.yaml) or remove this one "
            f"(juju remove-unit {self.unit.name})"
        )

    def _snap_message(self, left: list[str]) -> str:
        return (
            "replaced the aar snap (stopped, disabled), not serving; not carried over: "
            f"{'; '.join(left)}; then remove it: juju exec --unit {self.unit.name} -- "
            "sudo snap remove aar (docs/charm.md: Migrating)"
        )

    def _trust_issues(self) -> list[ops.StatusBase]:
        """What in the relations cannot be trusted, then the changes the daemon refused."""
        try:
            _, plan = self._trust_plan()
        except WorkloadError as e:
            return [ops.BlockedStatus(f"cannot read the trust store: {e}")]
        problems = [*plan.problems, *self._found.trust_refused]
        return [ops.BlockedStatus(problem) for problem in problems]

    def _service_issues(self) -> list[ops.StatusBase]:
        """The daemon not running: as this dispatch waited for it, else as systemd says."""
        ready = self._found.service_ready
        if ready is None:
            ready = self.workload.is_running()
        if ready:
            return []
        reason = self.workload.failure_reason() or "it exited"
        return [
            ops.BlockedStatus(f"the aar service is not running: {reason}; see journalctl -u aar")
        ]

    def _serving_status(self) -> ops.StatusBase:
        """Active: where the registry serves, from which storage, to how many AMS."""
        running = self._running_config()
        if running is None:
            return ops.WaitingStatus("waiting for a valid configuration")
        try:
            trusted = self.workload.trusted()
        except WorkloadError as e:
            return ops.BlockedStatus(f"cannot read the trust store: {e}")
        return ops.ActiveStatus(
            active_message(
                self._address(None),
                running["port"],
                running["storage"],
                trusted,
                self._holdings(),
            )
        )

    def _holdings(self) -> str:
        """What the registry holds, or "" when the daemon cannot say (the status goes on)."""
        try:
            return holdings(self.workload.registry_status())
        except WorkloadError as e:
            logger.debug("aar status: %s", e)
            return ""


if __name__ == "__main__":  # pragma: no cover
    ops.main(AarCharm)
