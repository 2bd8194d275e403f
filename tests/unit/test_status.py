"""The status collector on its own: given a state, it says what is wrong and changes nothing.

Each test builds the charm around an action (which applies nothing) and asks it for its
status before the action runs, so whatever the machine looks like afterwards is what the
collector found, not what a reconcile made of it.
"""

from __future__ import annotations

import dataclasses

from ops import testing

from charm import Findings
from conftest import client_relation, deployed

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
