"""One server identity for the application: the leader shares it, every unit presents it.

Each unit is its own machine here (a `FakeWorkload` of its own), and the application secret
and the peer relation's application data are carried from one unit's State to the next as
Juju would carry them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import stat
from pathlib import Path

import pytest
from ops import testing
from test_secrets import assert_nothing_leaks

import charm as charm_module
import identity
from certs import make_identity
from conftest import TOKEN, FakeWorkload, client_relation

PEERS = "aar-peers"
S3 = "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n"
CONFIG = {"ua_token": TOKEN, "storage_config": S3}


class Machine(FakeWorkload):
    """A unit's machine; `aar restore` puts the backup's server key and certificate back,
    as the daemon's restore does (the backup file here holds just that pair, as JSON)."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.restored: list[Path] = []

    def restore(self, path: Path, *, force: bool = False) -> str:
        backup = json.loads(path.read_text())
        cert, key = self.tls_paths()
        key.write_text(backup["key"])
        cert.write_text(backup["certificate"])
        self.restored.append(path)
        return "restored the server identity, 0 trusted and 0 revoked certificates"

    def tls_paths(self) -> tuple[Path, Path]:
        certs = self.paths.state_directory / "certs"
        return certs / "server.crt", certs / "server.key"

    def put_pair(self, pair: identity.Pair) -> None:
        cert, key = self.tls_paths()
        cert.parent.mkdir(parents=True, exist_ok=True)
        key.write_text(pair.key)
        cert.write_text(pair.certificate)

    def pair(self) -> identity.Pair | None:
        return identity.read_pair(*self.tls_paths())


@pytest.fixture
def machines(tmp_path, monkeypatch):
    """One machine per unit; `on(n)` makes the charm see unit n's."""
    made: dict[int, Machine] = {}

    def machine(n: int) -> Machine:
        if n not in made:
            made[n] = Machine(tmp_path / f"unit-{n}")
        return made[n]

    @contextlib.contextmanager
    def on(n: int):
        monkeypatch.setattr(charm_module, "Workload", lambda: machine(n))
        yield machine(n)

    return machine, on


def server_pair(name: str = "aar-server") -> identity.Pair:
    made = make_identity(name)
    return identity.Pair(made.cert_pem, made.key_pem)


def peers(*others: int, app_data: dict | None = None) -> testing.PeerRelation:
    return testing.PeerRelation(
        endpoint=PEERS,
        id=7,
        local_app_data=dict(app_data or {}),
        peers_data={n: {"ingress-address": f"10.0.0.{n + 10}"} for n in others},
    )


def bring_up(ctx, state: testing.State) -> testing.State:
    for event in (ctx.on.install(), ctx.on.config_changed(), ctx.on.start()):
        state = ctx.run(event, state)
    return state


def shared_secret(state: testing.State) -> testing.Secret:
    secret_id = state.get_relation(7).local_app_data[identity.SECRET_ID]
    return state.get_secret(id=secret_id)


def as_seen_by_another_unit(
    leader_state: testing.State, *others: int, relations=()
) -> testing.State:
    """What a unit of the same application sees of the leader's secret and app data."""
    secret = shared_secret(leader_state)
    app_data = dict(leader_state.get_relation(7).local_app_data)
    return testing.State(
        leader=False,
        config=CONFIG,
        relations=[peers(*others, app_data=app_data), *relations],
        secrets=[secret],
    )


def fingerprint_in_relation(state: testing.State, relation: testing.Relation) -> str:
    return state.get_relation(relation.id).local_unit_data.get("fingerprint", "")


# -- the leader shares ------------------------------------------------------------------


def test_the_leader_shares_the_pair_already_on_its_disk(machines):
    machine, on = machines
    pair = server_pair()
    machine(0).put_pair(pair)  # generated earlier, or carried over from the snap
    ctx = testing.Context(charm_module.AarCharm, unit_id=0)
    with on(0):
        state = bring_up(ctx, testing.State(leader=True, config=CONFIG, relations=[peers(1)]))
    secret = shared_secret(state)
    assert secret.owner == "app" and secret.label == identity.SECRET_LABEL
    assert identity.Pair.from_content(secret.latest_content, secret.id) == pair
    assert machine(0).pair() == pair, "the pair on disk is kept as it is"
    # Adopted: the charm does not know the names its certificate was made for.
    assert identity.NAMES not in state.get_relation(7).local_app_data
    assert state.unit_status.name == "active"


def test_the_leader_shares_what_its_daemon_generates_with_every_known_address(machines):
    machine, on = machines
    ctx = testing.Context(charm_module.AarCharm, unit_id=0)
    with on(0):
        state = bring_up(ctx, testing.State(leader=True, config=CONFIG, relations=[peers(1)]))
        generated = machine(0).pair()
        assert generated is not None
        secret = shared_secret(state)
        assert identity.Pair.from_content(secret.latest_content, secret.id) == generated
        names = json.loads(state.get_relation(7).local_app_data[identity.NAMES])
        assert names == ["10.0.0.11", "192.0.2.0"], "its own address and the peer's"
        assert set(names) <= set(machine(0).current_config().split("advertise:")[1].split())
        # The config already names them: nothing changes, nothing restarts afterwards.
        writes, restarts = machine(0).config_writes, machine(0).restarts
        state = ctx.run(ctx.on.update_status(), state)
    assert (machine(0).config_writes, machine(0).restarts) == (writes, restarts)
    assert shared_secret(state).latest_content == secret.latest_content


def test_without_the_peer_relation_a_unit_serves_its_own_pair_as_before(machines):
    machine, on = machines
    ctx = testing.Context(charm_module.AarCharm, unit_id=1)
    with on(1):
        state = bring_up(ctx, testing.State(leader=False, config=CONFIG))
    assert machine(1).running and state.unit_status.name == "active"
    assert not state.secrets


# -- the other units wait, then present the same pair -----------------------------------


def test_a_unit_waits_for_the_shared_identity_then_presents_the_leaders(machines, ams):
    machine, on = machines
    leader_ctx = testing.Context(charm_module.AarCharm, unit_id=0)
    other_ctx = testing.Context(charm_module.AarCharm, unit_id=1)
    relation = client_relation(ams["ams-east/0"], relation_id=3)

    with on(1):
        waiting = bring_up(
            other_ctx,
            testing.State(leader=False, config=CONFIG, relations=[peers(0), relation]),
        )
        waiting = other_ctx.run(
            other_ctx.on.relation_changed(waiting.get_relation(3), remote_unit=0), waiting
        )
    assert waiting.unit_status == testing.WaitingStatus(identity.WAITING)
    assert not machine(1).running and not waiting.opened_ports
    assert machine(1).pair() is None, "no pair of its own was generated"
    assert fingerprint_in_relation(waiting, relation) == ""

    with on(0):
        leader = bring_up(
            leader_ctx,
            testing.State(leader=True, config=CONFIG, relations=[peers(1), relation]),
        )
        leader = leader_ctx.run(
            leader_ctx.on.relation_changed(leader.get_relation(3), remote_unit=0), leader
        )
    with on(1):
        other = as_seen_by_another_unit(leader, 0, relations=[relation])
        other = other_ctx.run(
            other_ctx.on.relation_changed(other.get_relation(7), remote_unit=0), other
        )
        other = other_ctx.run(
            other_ctx.on.relation_changed(other.get_relation(3), remote_unit=0), other
        )

    assert machine(1).running and other.unit_status.name == "active"
    assert machine(1).pair() == machine(0).pair()
    fingerprint = machine(0).pair().fingerprint
    assert fingerprint_in_relation(leader, relation) == fingerprint
    assert fingerprint_in_relation(other, relation) == fingerprint
    ours, theirs = (s.get_relation(3).local_unit_data for s in (leader, other))
    assert ours["certificate"] == theirs["certificate"]
    assert ours["port"] == theirs["port"] == "3000"
    cert, key = machine(1).tls_paths()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert.stat().st_mode) == 0o600


def test_a_unit_whose_pair_differs_replaces_it_keeps_a_backup_and_restarts(machines, caplog):
    caplog.set_level(logging.INFO)
    machine, on = machines
    shared, own = server_pair("shared"), server_pair("own")
    ctx = testing.Context(charm_module.AarCharm, unit_id=0)
    with on(0):
        machine(0).put_pair(shared)
        leader = bring_up(ctx, testing.State(leader=True, config=CONFIG, relations=[peers(1)]))
    other_ctx = testing.Context(charm_module.AarCharm, unit_id=1)
    with on(1):
        machine(1).put_pair(own)
        # It served before the identity was shared (an upgrade from before it was).
        state = bring_up(other_ctx, testing.State(leader=False, config=CONFIG))
        assert machine(1).running
        restarts = machine(1).restarts
        state = dataclasses.replace(as_seen_by_another_unit(leader, 0))
        state = other_ctx.run(other_ctx.on.upgrade_charm(), state)
    assert machine(1).pair() == shared
    assert machine(1).restarts == restarts + 1, "the running daemon presents the new pair"
    cert, key = machine(1).tls_paths()
    tag = own.fingerprint[:16]
    kept_cert = cert.with_name(f"server.crt.replaced-{tag}")
    kept_key = key.with_name(f"server.key.replaced-{tag}")
    assert identity.Pair(kept_cert.read_text(), kept_key.read_text()) == own
    assert stat.S_IMODE(kept_key.stat().st_mode) == 0o600
    assert state.unit_status.name == "active"
    assert f"installed the application's server identity (fingerprint {shared.fingerprint})" in (
        caplog.text
    )


def test_a_unit_not_named_by_the_certificate_keeps_it_and_says_so(machines, caplog):
    caplog.set_level(logging.WARNING)
    machine, on = machines
    ctx = testing.Context(charm_module.AarCharm, unit_id=0)
    with on(0):
        leader = bring_up(ctx, testing.State(leader=True, config=CONFIG, relations=[peers()]))
    names = json.loads(leader.get_relation(7).local_app_data[identity.NAMES])
    assert names == ["192.0.2.0"]
    # A unit added later, at an address the certificate was not made for.
    other_ctx = testing.Context(charm_module.AarCharm, unit_id=2)
    with on(2):
        state = as_seen_by_another_unit(leader, 0)
        state = dataclasses.replace(
            state, networks={testing.Network("client", ingress_addresses=["198.51.100.7"])}
        )
        state = other_ctx.run(other_ctx.on.config_changed(), state)
        state = other_ctx.run(other_ctx.on.start(), state)
    assert machine(2).pair() == machine(0).pair(), "the fingerprint is kept"
    assert "does not name 198.51.100.7" in caplog.text
    assert state.unit_status.name == "active"


# -- leadership moves -------------------------------------------------------------------


def test_a_new_leader_keeps_the_fingerprint(machines):
    machine, on = machines
    ctx0 = testing.Context(charm_module.AarCharm, unit_id=0)
    with on(0):
        first = bring_up(ctx0, testing.State(leader=True, config=CONFIG, relations=[peers(1)]))
    secret = shared_secret(first)
    before = dict(secret.latest_content)
    ctx1 = testing.Context(charm_module.AarCharm, unit_id=1)
    with on(1):
        state = as_seen_by_another_unit(first, 0)
        state = bring_up(ctx1, state)
        state = dataclasses.replace(state, leader=True)
        state = ctx1.run(ctx1.on.leader_elected(), state)
        state = ctx1.run(ctx1.on.update_status(), state)
    assert state.get_relation(7).local_app_data[identity.SECRET_ID] == secret.id
    assert len(state.secrets) == 1
    assert state.get_secret(id=secret.id).latest_content == before
    assert machine(1).pair() == machine(0).pair()
    assert state.unit_status.name == "active"


# -- restore ------------------------------------------------------------------------------


def a_backup(tmp_path: Path, pair: identity.Pair) -> Path:
    path = tmp_path / "aar-0.backup"
    path.write_text(json.dumps(pair.content()))
    return path


def test_a_restore_on_the_leader_makes_the_restored_pair_the_applications(machines, tmp_path):
    machine, on = machines
    backed_up = server_pair("backed-up")
    ctx0 = testing.Context(charm_module.AarCharm, unit_id=0)
    with on(0):
        leader = bring_up(ctx0, testing.State(leader=True, config=CONFIG, relations=[peers(1)]))
        before = machine(0).pair()
        path = a_backup(tmp_path, backed_up)
        leader = ctx0.run(
            ctx0.on.action("restore", params={"path": str(path), "force": True}), leader
        )
    assert machine(0).restored == [path]
    assert machine(0).pair() == backed_up
    secret = shared_secret(leader)
    assert identity.Pair.from_content(secret.latest_content, secret.id) == backed_up
    assert ctx0.action_results["identity"] == (
        f"the restored server identity (fingerprint {backed_up.fingerprint}) is now the "
        "application's; every unit presents it from its next hook"
    )
    assert before != backed_up
    # Another unit learns of the new revision and presents it; its old pair is kept.
    ctx1 = testing.Context(charm_module.AarCharm, unit_id=1)
    with on(1):
        machine(1).put_pair(before)
        state = as_seen_by_another_unit(leader, 0)
        state = bring_up(ctx1, state)
        # The application's own units get no secret-changed: the leader's new fingerprint
        # in the peer data is what wakes them.
        state = dataclasses.replace(
            state,
            relations=[peers(0, app_data=dict(leader.get_relation(7).local_app_data))],
            secrets=[shared_secret(leader)],
        )
        state = ctx1.run(ctx1.on.relation_changed(state.get_relation(7), remote_unit=0), state)
    assert machine(1).pair() == backed_up
    cert, _ = machine(1).tls_paths()
    assert cert.with_name(f"server.crt.replaced-{before.fingerprint[:16]}").exists()


def test_a_restore_on_another_unit_presents_the_applications_pair_again(machines, tmp_path):
    machine, on = machines
    ctx0 = testing.Context(charm_module.AarCharm, unit_id=0)
    with on(0):
        leader = bring_up(ctx0, testing.State(leader=True, config=CONFIG, relations=[peers(1)]))
    shared = machine(0).pair()
    backed_up = server_pair("backed-up")
    ctx1 = testing.Context(charm_module.AarCharm, unit_id=1)
    with on(1):
        state = bring_up(ctx1, as_seen_by_another_unit(leader, 0))
        path = a_backup(tmp_path, backed_up)
        ctx1.run(ctx1.on.action("restore", params={"path": str(path), "force": True}), state)
    assert machine(1).pair() == shared
    kept = machine(1).tls_paths()[0].with_name(f"server.crt.replaced-{backed_up.fingerprint[:16]}")
    assert kept.read_text() == backed_up.certificate
    message = ctx1.action_results["identity"]
    assert message.startswith(
        f"this unit presents the application's server identity (fingerprint "
        f"{shared.fingerprint}), not the restored one (kept as "
    )
    assert message.endswith("restore on the leader to make a backup's identity the application's")
    assert machine(1).running


# -- the key stays secret ---------------------------------------------------------------


def test_the_private_key_shows_nowhere_but_its_files_and_the_secret(machines, ams, caplog):
    caplog.set_level(logging.DEBUG)
    machine, on = machines
    relation = client_relation(ams["ams-east/0"], relation_id=3)
    own = server_pair("own")
    leader_ctx = testing.Context(charm_module.AarCharm, unit_id=0)
    with on(0):
        leader = bring_up(
            leader_ctx, testing.State(leader=True, config=CONFIG, relations=[peers(1), relation])
        )
        leader = leader_ctx.run(
            leader_ctx.on.relation_changed(leader.get_relation(3), remote_unit=0), leader
        )
        for action in ("get-certificate", "list-clients"):
            leader_ctx.run(leader_ctx.on.action(action), leader)
            assert machine(0).pair().key not in str(leader_ctx.action_results)
    key_body = _key_body(machine(0).pair())
    assert_nothing_leaks(
        leader_ctx, leader, caplog, machine(0), [key_body], kept_in=machine(0).tls_paths()
    )
    other_ctx = testing.Context(charm_module.AarCharm, unit_id=1)
    with on(1):
        machine(1).put_pair(own)
        state = as_seen_by_another_unit(leader, 0, relations=[relation])
        state = bring_up(other_ctx, state)
        state = other_ctx.run(
            other_ctx.on.relation_changed(state.get_relation(3), remote_unit=0), state
        )
    cert, key = machine(1).tls_paths()
    kept = (cert, key, *cert.parent.glob("*.replaced-*"))
    assert_nothing_leaks(other_ctx, state, caplog, machine(1), [key_body], kept_in=kept)
    assert_nothing_leaks(other_ctx, state, caplog, machine(1), [_key_body(own)], kept_in=kept)
    assert repr(machine(1).pair()).count("BEGIN") == 1, "the dataclass repr shows no key"


def _key_body(pair: identity.Pair) -> str:
    """A line from the middle of the private key's PEM: what a leak would contain."""
    lines = [line for line in pair.key.splitlines() if not line.startswith("-----")]
    return lines[len(lines) // 2]


# -- the plan, case by case --------------------------------------------------------------


@pytest.mark.parametrize(
    ("leader", "peers_", "sole", "shared", "problem", "on_disk", "expected"),
    [
        (True, True, False, None, "", "a", identity.Step(share=True)),
        (True, True, False, None, "", None, identity.Step(share_after_start=True)),
        (True, True, False, "a", "", "b", identity.Step(install=True)),
        (True, True, False, "a", "", "a", identity.Step()),
        (False, True, False, "a", "", None, identity.Step(install=True)),
        (False, True, False, None, "", "b", identity.Step(wait=identity.WAITING)),
        (False, True, True, None, "", "b", identity.Step()),
        (False, False, False, None, "", "b", identity.Step()),
        (True, True, False, None, "gone", "b", identity.Step(share=True)),
        (
            False,
            True,
            False,
            None,
            "gone",
            "b",
            identity.Step(wait="gone; see the leader's status"),
        ),
    ],
)
def test_plan(leader, peers_, sole, shared, problem, on_disk, expected):
    pairs = {"a": server_pair("a"), "b": server_pair("b"), None: None}
    step = identity.plan(
        leader=leader,
        peers=peers_,
        sole_server=sole,
        shared=pairs[shared],
        shared_problem=problem,
        on_disk=pairs[on_disk],
    )
    assert step == expected


def test_half_a_pair_is_named_and_a_secret_without_a_key_names_the_key(tmp_path):
    cert = tmp_path / "server.crt"
    cert.write_text(server_pair().certificate)
    with pytest.raises(identity.IdentityError, match=r"server.crt exists but .*server.key does"):
        identity.read_pair(cert, tmp_path / "server.key")
    with pytest.raises(identity.IdentityError, match=r"secret:abc has no key$"):
        identity.Pair.from_content({"certificate": cert.read_text()}, "secret:abc")
