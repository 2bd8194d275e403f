"""`public_interface`, the official charm's option, kept so its bundles still deploy.

In the official charm it names the network interface whose IPv4 address is the unit's
public address (the one its server certificate is made for). Here that is what `location`
does, so the interface's address stands in for an unset `location`.
"""

from __future__ import annotations

import dataclasses

from conftest import TOKEN, client_relation, deployed


def related(ctx, fake, ams, **config):
    relation = client_relation(ams["ams-east/0"])
    state = deployed(ctx, fake, **config)
    return relation, ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0),
        dataclasses.replace(state, relations=[relation]),
    )


def logged(ctx) -> list[str]:
    return [f"{line.level} {line.message}" for line in ctx.juju_log]


def test_interface_address_is_advertised_when_location_is_unset(ctx, fake, ams):
    fake.interfaces["eth1"] = "198.51.100.4"
    relation, state = related(ctx, fake, ams, public_interface="eth1")
    assert state.get_relation(relation.id).local_unit_data["ip"] == "198.51.100.4"
    assert "- 198.51.100.4" in fake.current_config(), "the server certificate covers it"
    assert state.unit_status.message.startswith("serving 198.51.100.4:3000 ")
    assert any(
        line.startswith("WARNING public_interface is deprecated")
        and "juju config aar location=198.51.100.4; juju config aar --reset public_interface"
        in line
        for line in logged(ctx)
    )


def test_location_wins_over_public_interface(ctx, fake, ams):
    fake.interfaces["eth1"] = "198.51.100.4"
    relation, state = related(
        ctx, fake, ams, public_interface="eth1", location="registry.example.com"
    )
    assert state.get_relation(relation.id).local_unit_data["ip"] == "registry.example.com"
    assert "198.51.100.4" not in fake.current_config()
    assert (
        "WARNING public_interface is deprecated, and public_interface=eth1 is ignored: "
        "location is set (juju config aar --reset public_interface)"
    ) in logged(ctx)


def test_missing_interface_falls_back_to_the_ingress_address_and_says_so(ctx, fake, ams):
    relation, state = related(ctx, fake, ams, public_interface="ens7")
    assert state.get_relation(relation.id).local_unit_data["ip"] == "192.0.2.0"
    assert state.unit_status.message.startswith("serving 192.0.2.0:3000 ")
    assert (
        "WARNING public_interface: network interface 'ens7' does not exist on this machine "
        "(it has lo, eth0); advertising the relation's ingress address instead: set "
        "juju config aar location=<address>, or public_interface to an interface with an "
        "IPv4 address"
    ) in logged(ctx)


def test_interface_without_ipv4_falls_back_to_the_ingress_address(ctx, fake, ams):
    fake.interfaces["ifb0"] = ""
    relation, state = related(ctx, fake, ams, public_interface="ifb0")
    assert state.get_relation(relation.id).local_unit_data["ip"] == "192.0.2.0"
    assert any("network interface 'ifb0' has no IPv4 address" in line for line in logged(ctx))


def test_deprecation_is_logged_when_the_operator_acts_not_at_every_update(ctx, fake, ams):
    fake.interfaces["eth1"] = "198.51.100.4"
    state = deployed(ctx, fake, public_interface="eth1")
    ctx.juju_log.clear()
    ctx.run(ctx.on.update_status(), state)
    assert not any("deprecated" in line for line in logged(ctx))
    ctx.run(
        ctx.on.config_changed(),
        dataclasses.replace(state, config={"ua_token": TOKEN, "public_interface": "eth1"}),
    )
    assert any("deprecated" in line for line in logged(ctx))
