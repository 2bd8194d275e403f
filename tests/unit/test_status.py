"""The status collector on its own: given a state, it says what is wrong and changes nothing.

Each test builds the charm around an action (which applies nothing) and asks it for its
status before the action runs, so whatever the machine looks like afterwards is what the
collector found, not what a reconcile made of it.
"""

from __future__ import annotations

import dataclasses

import pytest
from ops import testing

from charm import Findings
from conftest import client_relation, deployed
from state import holdings

LOOK = "list-clients"  # an action: building the charm around it applies nothing


def test_a_daemon_stopped_behind_the_charms_back_is_reported_not_restarted(ctx, fake):
    state = deployed(ctx, fake)
    fake.running = False
    starts = fake.starts
    with ctx(ctx.on.action(LOOK), state) as manager:
        status = manager.charm._unit_status()
        assert fake.starts == starts
    assert status == testing.BlockedStatus(
        "the aar service is not running: it exited; see journalctl -u aar"
    )
    assert not fake.running


def test_a_non_leader_with_filesystem_storage_is_told_to_stand_down_without_stopping(ctx, fake):
    state = dataclasses.replace(deployed(ctx, fake), leader=False)
    with ctx(ctx.on.action(LOOK), state) as manager:
        status = manager.charm._unit_status()
        assert fake.running and fake.stops == 0
    assert status == testing.BlockedStatus(
        "filesystem storage serves from one unit only (the leader); configure S3 storage "
        "to run several (juju config aar -f config.yaml) or remove this one "
        "(juju remove-unit aar/0)"
    )


def test_a_relation_not_yet_reconciled_is_judged_without_touching_the_trust_store(ctx, fake, ams):
    relation = client_relation(ams["ams-east/0"], modes={0: "publisher"})
    state = dataclasses.replace(deployed(ctx, fake), relations=[relation])
    with ctx(ctx.on.action(LOOK), state) as manager:
        status = manager.charm._unit_status()
        assert fake.trust_changes == []
    assert status.message.startswith("ams-east/0 asks for publisher access on aar:client;")


def test_what_applying_met_takes_its_place_among_the_issues(ctx, fake, ams):
    relation = client_relation(ams["ams-east/0"], modes={0: "publisher"})
    state = dataclasses.replace(deployed(ctx, fake), relations=[relation])
    fake.running = False
    with ctx(ctx.on.action(LOOK), state) as manager:
        manager.charm._found = Findings(
            config_refused="the daemon refused the rendered config (x)",
            trust_refused=["cannot remove 0123456789ab: y"],
            service_ready=True,
        )
        issues = [status.message for status in manager.charm._issues()]
    # The config before the relations, the relations' own problems before the changes the
    # daemon refused; the service as this dispatch waited for it, not as it is now.
    assert issues[0] == "the daemon refused the rendered config (x)"
    assert issues[1].startswith("ams-east/0 asks for publisher access on aar:client;")
    assert issues[2:] == ["cannot remove 0123456789ab: y"]


# -- what the registry holds (`aar status`) -----------------------------------------------

HOLDS = {
    "applications": 3,
    "versions": 7,
    "blob_bytes": 123456789,
    "trusted_clients": 2,
    "trusted_publishers": 1,
    "last_publish": "2026-12-05T03:50:00Z",
    "storage": "fs",
    "index_loaded": True,
}


def test_the_active_status_says_what_the_registry_holds(ctx, fake):
    fake.holds = HOLDS
    state = deployed(ctx, fake)
    assert state.unit_status == testing.ActiveStatus(
        f"serving 192.0.2.0:3000 · fs {fake.paths.state_directory}/data · 0 clients, "
        "0 publishers · 3 apps, 7 versions, 117.7 MiB"
    )


def test_without_aar_status_the_active_status_stays_as_it_was(ctx, fake):
    fake.holds = None
    state = deployed(ctx, fake)
    assert state.unit_status == testing.ActiveStatus(
        f"serving 192.0.2.0:3000 · fs {fake.paths.state_directory}/data · 0 clients, 0 publishers"
    )


def test_an_index_not_loaded_yet_is_said_so(ctx, fake):
    fake.holds = {**HOLDS, "index_loaded": False}
    state = deployed(ctx, fake)
    assert state.unit_status.message.endswith("0 publishers · index not loaded yet")


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ({"applications": 1, "versions": 1, "blob_bytes": 512}, "1 app, 1 version, 512 B"),
        ({"applications": 0, "versions": 0, "blob_bytes": 0}, "0 apps, 0 versions, 0 B"),
        (
            {"applications": 2, "versions": 9, "blob_bytes": 5 * 2**40},
            "2 apps, 9 versions, 5.0 TiB",
        ),
        (
            {"applications": 2, "versions": 9, "blob_bytes": 2**50},
            "2 apps, 9 versions, 1024.0 TiB",
        ),
        # What it cannot read it does not say.
        ({"applications": "3", "versions": 7, "blob_bytes": 1}, ""),
        ({"applications": 3, "versions": 7}, ""),
        ({"applications": True, "versions": 7, "blob_bytes": 1}, ""),
        ({}, ""),
    ],
)
def test_holdings_in_a_few_words(status, said):
    assert holdings(status) == said
