"""Which unit serves filesystem storage: the one holding the data, not the leader."""

from __future__ import annotations

import pytest
from ops import testing

import charm as charm_module
from conftest import TOKEN

PEERS = "aar-peers"
S3 = """\
storage:
  s3:
    region: eu-west-3
    bucket: aar0
"""


def peers(owner: str | None, *others: int) -> testing.PeerRelation:
    """The peer relation as seen by one unit: the recorded owner, the other units present."""
    data = {"data-owner": owner} if owner else {}
    return testing.PeerRelation(
        endpoint=PEERS, local_app_data=data, peers_data={n: {} for n in others}
    )


def unit_context(unit_id: int) -> testing.Context:
    return testing.Context(charm_module.AarCharm, unit_id=unit_id)


def bring_up(ctx, state: testing.State) -> testing.State:
    for event in (ctx.on.install(), ctx.on.config_changed(), ctx.on.start()):
        state = ctx.run(event, state)
    return state


def owner_of(state: testing.State, relation: testing.PeerRelation) -> str | None:
    return state.get_relation(relation.id).local_app_data.get("data-owner")


def test_the_first_leader_to_see_no_owner_records_itself_and_serves(ctx, fake):
    relation = peers(None, 1)
    state = bring_up(
        ctx, testing.State(leader=True, config={"ua_token": TOKEN}, relations=[relation])
    )
    assert owner_of(state, relation) == "aar/0"
    assert fake.running and state.opened_ports
    assert state.unit_status.name == "active"


def test_the_owner_serves_without_leadership(ctx, fake):
    relation = peers("aar/0", 1)
    state = bring_up(
        ctx, testing.State(leader=False, config={"ua_token": TOKEN}, relations=[relation])
    )
    assert fake.running and state.opened_ports
    assert state.unit_status.name == "active"
    assert owner_of(state, relation) == "aar/0"


def test_a_unit_that_is_not_the_owner_stands_down_naming_it(fake):
    ctx = unit_context(1)
    relation = peers("aar/0", 0)
    state = bring_up(
        ctx, testing.State(leader=False, config={"ua_token": TOKEN}, relations=[relation])
    )
    assert not fake.running and not state.opened_ports
    assert state.unit_status == testing.BlockedStatus(
        "standby: fs data is on aar/0; configure S3 storage to serve from every unit "
        "(juju config aar -f config.yaml) or remove this one (juju remove-unit aar/1)"
    )
    # The config is there all the same, for `aar restore` should the owner be lost.
    assert fake.current_config() is not None


def test_a_new_leader_keeps_the_owner_and_stands_down(fake):
    ctx = unit_context(1)
    relation = peers("aar/0", 0)
    state = testing.State(leader=True, config={"ua_token": TOKEN}, relations=[relation])
    state = bring_up(ctx, state)
    state = ctx.run(ctx.on.leader_elected(), state)
    assert owner_of(state, relation) == "aar/0"
    assert not fake.running
    assert state.unit_status.message.startswith("standby: fs data is on aar/0;")


def test_the_owner_departing_blocks_the_leader_naming_it_and_the_way_out(fake):
    ctx = unit_context(1)
    relation = peers("aar/0", 0)
    state = bring_up(
        ctx, testing.State(leader=True, config={"ua_token": TOKEN}, relations=[relation])
    )
    state = ctx.run(ctx.on.relation_departed(relation, remote_unit=0, departing_unit=0), state)
    assert owner_of(state, relation) == "aar/0", "the data is on that machine: no silent move"
    assert not fake.running and not state.opened_ports
    assert state.unit_status == testing.BlockedStatus(
        "fs data was on aar/0, which left; restore a backup here (aar restore, "
        "docs/charm.md: Several units) and this unit serves it"
    )


def test_a_standby_names_the_lost_owner_and_defers_to_the_leader(fake):
    ctx = unit_context(2)
    relation = peers("aar/0", 1)
    state = bring_up(
        ctx, testing.State(leader=False, config={"ua_token": TOKEN}, relations=[relation])
    )
    assert not fake.running
    assert state.unit_status == testing.BlockedStatus(
        "standby: fs data was on aar/0, which left; see the leader's status"
    )


@pytest.mark.parametrize("volume_only", [False, True])
def test_a_leader_holding_the_data_takes_over_from_a_lost_owner(fake, volume_only):
    ctx = unit_context(1)
    relation = peers("aar/0")
    state = bring_up(
        ctx, testing.State(leader=True, config={"ua_token": TOKEN}, relations=[relation])
    )
    assert not fake.running
    data = fake.paths.state_directory / "data"
    (data / "lost+found").mkdir(parents=True)
    if not volume_only:
        (data / "apps").mkdir()  # what `aar restore` brought back
    state = ctx.run(ctx.on.update_status(), state)
    if volume_only:
        # An empty volume is no registry: the record stays and the unit keeps waiting.
        assert owner_of(state, relation) == "aar/0" and not fake.running
    else:
        assert owner_of(state, relation) == "aar/1"
        assert fake.running and state.unit_status.name == "active"


def test_every_unit_serves_with_s3_whoever_owns_the_filesystem(fake):
    ctx = unit_context(1)
    relation = peers("aar/0", 0)
    config = {"ua_token": TOKEN, "storage_config": S3}
    state = bring_up(ctx, testing.State(leader=True, config=config, relations=[relation]))
    assert fake.running and state.opened_ports
    assert owner_of(state, relation) == "aar/0"


def test_a_leader_with_s3_records_no_owner(ctx, fake):
    relation = peers(None)
    config = {"ua_token": TOKEN, "storage_config": S3}
    state = bring_up(ctx, testing.State(leader=True, config=config, relations=[relation]))
    assert owner_of(state, relation) is None and fake.running
