"""Taking a machine over from the snap-based official charm: its daemon stopped and
disabled, its server identity carried over, and what was not carried said in the status."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ops import testing

from certs import make_identity
from conftest import TOKEN, client_relation

# snapd's `snap` as far as the charm uses it, keeping its state in a file beside it.
FAKE_SNAP = """\
import json, sys
from pathlib import Path
state_file = Path(__file__).with_name("snap-state.json")
state = json.loads(state_file.read_text())
state.setdefault("calls", []).append(sys.argv[1:])
status = 0
if sys.argv[1:] == ["list", "aar"]:
    if not state["installed"]:
        print("error: no matching snaps installed", file=sys.stderr)
        status = 1
elif sys.argv[1:] == ["stop", "--disable", "aar"]:
    if state.get("refuse_stop"):
        print(f"error: {state['refuse_stop']}", file=sys.stderr)
        status = 1
    else:
        state["active"] = state["enabled"] = False
else:
    print(f"unexpected: {sys.argv[1:]}", file=sys.stderr)
    status = 2
state_file.write_text(json.dumps(state))
sys.exit(status)
"""


class Snapd:
    """The stand-in `snap` command under the test's system root."""

    def __init__(self, root: Path):
        self.command = root / "usr/bin/snap"
        self.command.parent.mkdir(parents=True, exist_ok=True)
        (self.command.parent / "fake_snap.py").write_text(FAKE_SNAP)
        self.command.write_text(
            f'#!/bin/sh\nexec {sys.executable} {self.command.parent / "fake_snap.py"} "$@"\n'
        )
        self.command.chmod(0o755)
        self._file = self.command.with_name("snap-state.json")
        self.state = {"installed": False, "active": False, "enabled": False}

    @property
    def state(self) -> dict:
        return json.loads(self._file.read_text())

    @state.setter
    def state(self, value: dict) -> None:
        self._file.write_text(json.dumps(value))

    def update(self, **changes) -> None:
        self.state = {**self.state, **changes}

    @property
    def calls(self) -> list[list[str]]:
        return self.state.get("calls", [])


@pytest.fixture
def snapd(fake) -> Snapd:
    return Snapd(fake.paths.root)


@pytest.fixture
def official(fake, snapd):
    """The official charm's snap, running, with its server identity and a trusted AMS."""
    snapd.update(installed=True, active=True, enabled=True)
    common = fake.paths.root / "var/snap/aar/common"
    identity = make_identity("aar-snap-server")
    (common / "certs/clients").mkdir(parents=True)
    (common / "certs/publishers").mkdir()
    (common / "certs/server.crt").write_text(identity.cert_pem)
    (common / "certs/server.key").write_text(identity.key_pem)
    (common / "certs/publishers/ams.crt").write_text(make_identity("ams/0").cert_pem)
    return identity


def run(ctx, state, *events):
    for event in events:
        state = ctx.run(event, state)
    return state


def test_install_stops_the_snap_carries_its_identity_and_waits(ctx, fake, snapd, official, ams):
    relation = client_relation(ams["ams-east/0"])
    state = testing.State(leader=True, config={"ua_token": TOKEN}, relations=[relation])
    state = run(ctx, state, ctx.on.install(), ctx.on.config_changed(), ctx.on.start())

    assert ["stop", "--disable", "aar"] in snapd.calls
    assert not snapd.state["active"] and not snapd.state["enabled"]
    key = fake.paths.state_directory / "certs/server.key"
    certificate = fake.paths.state_directory / "certs/server.crt"
    assert key.read_text() == official.key_pem
    assert certificate.read_text() == official.cert_pem
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    # Not an empty registry in the snap's place: nothing served until the operator says so.
    assert not fake.running and fake.starts == 0 and not state.opened_ports
    assert state.unit_status == testing.BlockedStatus(
        "replaced the aar snap (stopped, disabled), not serving; not carried over: its images "
        "(publish them again from the publisher AMS); its trust added by hand (aar trust "
        "add); then remove it: juju exec --unit aar/0 -- sudo snap remove aar "
        "(docs/charm.md: Migrating)"
    )
    # The related AMS units are trusted again from the relation, under the same fingerprint.
    assert ams["ams-east/0"].fingerprint in fake.trust_store
    data = state.get_relation(relation.id).local_unit_data
    assert data["fingerprint"] == official.fingerprint

    # The operator removes the snap: the registry serves, with the snap's identity.
    snapd.update(installed=False)
    state = run(ctx, state, ctx.on.update_status())
    assert fake.running and state.opened_ports
    assert state.unit_status.name == "active"
    assert certificate.read_text() == official.cert_pem


def test_upgrade_from_the_official_charm_takes_over_the_same_way(ctx, fake, snapd, official):
    state = testing.State(leader=True, config={"ua_token": TOKEN})
    state = run(ctx, state, ctx.on.upgrade_charm(), ctx.on.config_changed())
    assert not snapd.state["active"]
    assert not fake.running
    assert state.unit_status.message.startswith("replaced the aar snap (stopped, disabled)")
    assert (fake.paths.state_directory / "certs/server.crt").read_text() == official.cert_pem


def test_a_snap_started_again_is_stopped_again_and_the_first_record_kept(
    ctx, fake, snapd, official
):
    state = testing.State(leader=True, config={"ua_token": TOKEN})
    state = run(ctx, state, ctx.on.install(), ctx.on.config_changed())
    first = state.unit_status
    snapd.update(active=True, enabled=True)
    state = run(ctx, state, ctx.on.update_status())
    assert not snapd.state["active"] and not snapd.state["enabled"]
    assert state.unit_status == first


def test_an_identity_of_its_own_is_kept_and_the_snaps_named_as_left(ctx, fake, snapd, official):
    own = make_identity("aar-own")
    certs = fake.paths.state_directory / "certs"
    certs.mkdir(parents=True)
    (certs / "server.crt").write_text(own.cert_pem)
    (certs / "server.key").write_text(own.key_pem)
    state = run(ctx, testing.State(leader=True, config={"ua_token": TOKEN}), ctx.on.install())
    assert (certs / "server.crt").read_text() == own.cert_pem
    assert "server key" not in state.unit_status.message


def test_an_unreadable_identity_is_named_as_not_carried(ctx, fake, snapd, official):
    (fake.paths.root / "var/snap/aar/common/certs/server.key").unlink()
    state = run(ctx, testing.State(leader=True, config={"ua_token": TOKEN}), ctx.on.install())
    assert not (fake.paths.state_directory / "certs/server.crt").exists()
    assert "its server key and certificate (AMS must pin the new fingerprint)" in (
        state.unit_status.message
    )


def test_a_snap_that_will_not_stop_keeps_the_daemon_from_starting(ctx, fake, snapd, official):
    snapd.update(refuse_stop='snap "aar" has changes in progress')
    state = testing.State(leader=True, config={"ua_token": TOKEN})
    state = run(ctx, state, ctx.on.install(), ctx.on.config_changed(), ctx.on.start())
    assert not fake.running and fake.starts == 0
    assert state.unit_status == testing.BlockedStatus(
        'cannot install the daemon: cannot stop the aar snap: error: snap "aar" has changes '
        "in progress; stop it by hand (sudo snap stop --disable aar); the charm tries again "
        "at every hook"
    )


@pytest.mark.parametrize("snapd_present", [True, False])
def test_without_the_snap_nothing_is_done(ctx, fake, snapd_present):
    if snapd_present:
        snapd = Snapd(fake.paths.root)
    state = testing.State(leader=True, config={"ua_token": TOKEN})
    state = run(ctx, state, ctx.on.install(), ctx.on.config_changed(), ctx.on.start())
    if snapd_present:
        assert snapd.calls and all(call == ["list", "aar"] for call in snapd.calls)
    assert not (fake.paths.charm_state / "snap-replaced.json").exists()
    assert fake.running and state.unit_status.name == "active"
