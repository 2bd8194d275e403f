"""The relation data the real AMS charm sends, in both of its encodings.

The AMS charm that relates to aar is a reactive charm: charms.reactive's `Endpoint`
JSON-encodes every value it publishes, so `mode` arrives as `"publisher"` with its quotes
and the certificate as one quoted line with `\\n` escapes. Hand-written or ops-based
relations send the same values raw. Both must be trusted the same way.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from ops import testing

from conftest import deployed
from state import RemoteUnit, decode_relation_value

ENDPOINTS = ["client", "publisher"]


def reactive(value: str) -> str:
    """A value as charms.reactive publishes it (`json.dumps`, what AMS's charm sends)."""
    return json.dumps(value)


def ams_relation(endpoint, units, app="ams"):
    """A relation on `endpoint` whose remote units sent `units` (index → databag)."""
    return testing.Relation(
        endpoint=endpoint, interface="aar", remote_app_name=app, remote_units_data=units
    )


def joined(ctx, fake, relation, unit=0):
    state = deployed(ctx, fake)
    return ctx.run(
        ctx.on.relation_changed(relation, remote_unit=unit),
        dataclasses.replace(state, relations=[relation]),
    )


# -- decoding, on its own ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "meant"),
    [
        ('"publisher"', "publisher"),
        ("publisher", "publisher"),
        (' "client"\n', "client"),  # JSON allows whitespace around the literal
        ('"-----BEGIN CERTIFICATE-----\\nMII\\n"', "-----BEGIN CERTIFICATE-----\nMII\n"),
        ('"caf\\u00e9"', "café"),
        ('""', ""),
        ("", ""),
        # Not JSON string literals: taken exactly as sent.
        ('"unterminated', '"unterminated'),
        ('"a" "b"', '"a" "b"'),
        ("null", "null"),
        ("42", "42"),
        ('{"mode": "client"}', '{"mode": "client"}'),
        ('["client"]', '["client"]'),
        ("-----BEGIN CERTIFICATE-----\nMII\n", "-----BEGIN CERTIFICATE-----\nMII\n"),
    ],
)
def test_a_value_is_decoded_only_when_it_is_a_json_string_literal(sent, meant):
    assert decode_relation_value(sent) == meant


def test_remote_unit_from_reactive_data_equals_the_one_from_raw_data(ams):
    pem = ams["ams/0"].cert_pem
    raw = RemoteUnit.from_data("publisher", 4, "ams/0", {"certificate": pem, "mode": "publisher"})
    encoded = RemoteUnit.from_data(
        "publisher", 4, "ams/0", {"certificate": reactive(pem), "mode": reactive("publisher")}
    )
    assert encoded == raw
    assert raw.certificate == pem and raw.mode == "publisher"


# -- through the charm -------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("encode", [reactive, str], ids=["reactive", "raw"])
def test_ams_unit_is_trusted_in_the_role_of_its_endpoint(ctx, fake, ams, endpoint, encode):
    identity = ams["ams/0"]
    relation = ams_relation(
        endpoint, {0: {"certificate": encode(identity.cert_pem), "mode": encode(endpoint)}}
    )
    state = joined(ctx, fake, relation)
    (cert,) = fake.trusted()
    assert cert["fingerprint"] == identity.fingerprint
    assert (cert["role"], cert["origin"]) == (endpoint, f"relation {endpoint}:{relation.id} ams/0")
    counts = "1 client, 0 publishers" if endpoint == "client" else "0 clients, 1 publisher"
    assert state.unit_status.message.endswith(counts)
    # What the registry sends back is raw, as the official charm sends it: a reactive
    # reader falls back to the raw string for a value that is not JSON.
    local = state.get_relation(relation.id).local_unit_data
    assert local["certificate"].startswith("-----BEGIN CERTIFICATE-----\n")
    assert (local["ip"], local["port"]) == ("192.0.2.0", "3000")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("encode", [reactive, str], ids=["reactive", "raw"])
def test_missing_mode_means_the_role_of_the_endpoint(ctx, fake, ams, endpoint, encode):
    relation = ams_relation(endpoint, {0: {"certificate": encode(ams["ams/0"].cert_pem)}})
    joined(ctx, fake, relation)
    assert [c["role"] for c in fake.trusted()] == [endpoint]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_encoded_empty_mode_means_the_role_of_the_endpoint(ctx, fake, ams, endpoint):
    relation = ams_relation(
        endpoint, {0: {"certificate": reactive(ams["ams/0"].cert_pem), "mode": reactive("")}}
    )
    joined(ctx, fake, relation)
    assert [c["role"] for c in fake.trusted()] == [endpoint]


@pytest.mark.parametrize(
    ("endpoint", "mode", "message"),
    [
        (
            "client",
            "publisher",
            "ams-east/0 asks for publisher access on aar:client; relate "
            "ams-east:registry-publisher to aar:publisher instead (juju remove-relation "
            "ams-east aar:client; juju relate ams-east:registry-publisher aar:publisher)",
        ),
        (
            "publisher",
            "client",
            "ams-east/0 asks for client access on aar:publisher; relate "
            "ams-east:registry-client to aar:client instead (juju remove-relation "
            "ams-east aar:publisher; juju relate ams-east:registry-client aar:client)",
        ),
    ],
)
@pytest.mark.parametrize("encode", [reactive, str], ids=["reactive", "raw"])
def test_mode_that_does_not_match_the_endpoint_blocks_with_the_commands(
    ctx, fake, ams, endpoint, mode, message, encode
):
    relation = ams_relation(
        endpoint,
        {0: {"certificate": encode(ams["ams-east/0"].cert_pem), "mode": encode(mode)}},
        app="ams-east",
    )
    state = joined(ctx, fake, relation)
    assert state.unit_status == testing.BlockedStatus(message)
    assert fake.trusted() == []


def test_unknown_mode_blocks_naming_the_two_valid_ones(ctx, fake, ams):
    relation = ams_relation(
        "client",
        {0: {"certificate": reactive(ams["ams/0"].cert_pem), "mode": reactive("push")}},
    )
    state = joined(ctx, fake, relation)
    assert state.unit_status == testing.BlockedStatus(
        "ams/0 sends registry mode 'push', which is neither client nor publisher; relate "
        "ams:registry-client to aar:client (read-only) or ams:registry-publisher to "
        "aar:publisher (read/write)"
    )
    assert fake.trusted() == []


def test_cross_model_unit_is_named_without_its_stand_in_application(ctx, fake, ams):
    # Across models the offering side sees the consumer as remote-<uuid>: a name no
    # command typed in the AMS model would accept.
    app = "remote-2b8ea8dd0bb44a9d8a7c6f0e4bbc3b08"
    relation = ams_relation(
        "client",
        {0: {"certificate": reactive(ams["ams/0"].cert_pem), "mode": reactive("publisher")}},
        app=app,
    )
    state = joined(ctx, fake, relation)
    assert state.unit_status == testing.BlockedStatus(
        f"{app}/0 asks for publisher access on aar:client; relate <ams>:registry-publisher "
        "to aar:publisher instead (juju remove-relation <ams> aar:client; juju relate "
        "<ams>:registry-publisher aar:publisher)"
    )


def test_encoded_value_that_is_no_certificate_blocks_naming_the_unit(ctx, fake):
    relation = ams_relation(
        "client", {0: {"certificate": reactive("not a certificate"), "mode": '"client"'}}
    )
    state = joined(ctx, fake, relation)
    assert state.unit_status == testing.BlockedStatus(
        "invalid certificate from ams/0: no PEM certificate found in the certificate "
        "of ams/0 (aar:client): expected -----BEGIN CERTIFICATE-----"
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_departed_reactive_unit_is_removed_and_the_other_stays(ctx, fake, ams, endpoint):
    # The publisher endpoint takes one unit, so its second unit is a client elsewhere.
    units = {0: {"certificate": reactive(ams["ams/0"].cert_pem), "mode": reactive(endpoint)}}
    other = ams_relation(
        "client",
        {0: {"certificate": reactive(ams["ams-west/0"].cert_pem), "mode": reactive("client")}},
        app="ams-west",
    )
    relation = ams_relation(endpoint, units)
    state = deployed(ctx, fake)
    state = dataclasses.replace(state, relations=[relation, other])
    state = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    assert len(fake.trusted()) == 2
    state = ctx.run(
        ctx.on.relation_departed(state.get_relation(relation.id), remote_unit=0, departing_unit=0),
        state,
    )
    assert [c["fingerprint"] for c in fake.trusted()] == [ams["ams-west/0"].fingerprint]
    assert state.unit_status.message.endswith("1 client, 0 publishers")


def test_unit_that_switches_encoding_keeps_its_trust_unchanged(ctx, fake, ams):
    # An AMS charm upgraded from reactive to ops may republish the same values raw.
    identity = ams["ams/0"]
    encoded = ams_relation(
        "publisher", {0: {"certificate": reactive(identity.cert_pem), "mode": '"publisher"'}}
    )
    state = joined(ctx, fake, encoded)
    fake.trust_changes.clear()
    raw = dataclasses.replace(
        state.get_relation(encoded.id),
        remote_units_data={0: {"certificate": identity.cert_pem, "mode": "publisher"}},
    )
    ctx.run(
        ctx.on.relation_changed(raw, remote_unit=0), dataclasses.replace(state, relations=[raw])
    )
    assert fake.trust_changes == []
    assert [c["role"] for c in fake.trusted()] == ["publisher"]
