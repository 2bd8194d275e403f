"""State-transition tests of the charm (ops.testing), one situation per test.

Long on purpose: one situation per test, each built from its own State.
"""

from __future__ import annotations

import dataclasses

import pytest
from ops import testing

from conftest import TOKEN, client_relation, deployed, state_dir

# -- install, ua_token, service --------------------------------------------------------


def test_install_without_token_blocks_with_the_command_to_type(ctx, fake):
    state = testing.State(leader=True)
    for event in (ctx.on.install(), ctx.on.config_changed(), ctx.on.start()):
        state = ctx.run(event, state)
    assert state.unit_status == testing.BlockedStatus(
        "set the Ubuntu Pro token: juju config aar ua_token=<token>"
    )
    assert fake.installs == 1
    assert fake.current_config() is not None, "the config is rendered before the token"
    assert not fake.running, "the registry does not serve before the token is set"
    assert not state.opened_ports
    assert state.workload_version == "0.1.0"


def test_token_set_serves_on_the_filesystem(ctx, fake):
    state = deployed(ctx, fake)
    assert state.unit_status == testing.ActiveStatus(
        f"serving 192.0.2.0:3000 · fs {state_dir(fake)}/data · 0 clients, 0 publishers"
    )
    assert fake.running and fake.starts == 1 and fake.restarts == 0
    assert state.opened_ports == {testing.TCPPort(3000)}


def test_unchanged_config_does_not_restart(ctx, fake):
    state = deployed(ctx, fake)
    writes = fake.config_writes
    for event in (ctx.on.config_changed(), ctx.on.update_status(), ctx.on.leader_elected()):
        state = ctx.run(event, state)
    assert (fake.restarts, fake.config_writes) == (0, writes)


def test_port_change_rewrites_config_restarts_once_and_moves_the_port(ctx, fake):
    state = deployed(ctx, fake)
    state = ctx.run(
        ctx.on.config_changed(),
        dataclasses.replace(state, config={"ua_token": TOKEN, "port": 3443}),
    )
    assert fake.restarts == 1
    assert "addr: 0.0.0.0:3443" in fake.current_config()
    assert state.opened_ports == {testing.TCPPort(3443)}
    assert state.unit_status.message.startswith("serving 192.0.2.0:3443 ")


def test_config_the_daemon_refuses_keeps_the_running_one(ctx, fake):
    state = deployed(ctx, fake)
    before = fake.current_config()
    fake.reject_config = "http.addr: cannot listen"
    state = ctx.run(
        ctx.on.config_changed(),
        dataclasses.replace(state, config={"ua_token": TOKEN, "port": 3443}),
    )
    assert fake.current_config() == before and fake.restarts == 0 and fake.running
    assert state.unit_status == testing.BlockedStatus(
        "the daemon refused the rendered config (http.addr: cannot listen); the previous "
        "config is kept: check juju config aar and the charm revision"
    )


def test_service_that_does_not_start_blocks_with_its_reason(ctx, fake):
    fake.fail_start = "opening storage.fs.root-directory /srv/aar: permission denied"
    state = deployed(ctx, fake)
    assert state.unit_status == testing.BlockedStatus(
        "the aar service is not running: opening storage.fs.root-directory /srv/aar: "
        "permission denied; see journalctl -u aar"
    )


def test_upgrade_keeps_config_and_trust_and_restarts_for_the_new_binary(ctx, fake, ams):
    relation = client_relation(ams["ams-east/0"])
    state = deployed(ctx, fake)
    state = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0),
        dataclasses.replace(state, relations=[relation]),
    )
    config, trust = fake.current_config(), fake.trusted()
    state = ctx.run(ctx.on.upgrade_charm(), state)
    assert fake.installs == 2 and fake.restarts == 1
    assert fake.current_config() == config and fake.trusted() == trust
    assert state.unit_status.message.endswith("1 client, 0 publishers")


@pytest.mark.parametrize("event", ["stop", "remove"])
def test_stop_and_remove_stop_the_service_and_keep_data(ctx, fake, ams, event):
    state = deployed(ctx, fake)
    fake.trust(ams["ams/0"].cert_pem, "client", "cli")
    ctx.run(getattr(ctx.on, event)(), state)
    assert not fake.running and fake.stops == 1
    assert fake.current_config() is not None and len(fake.trusted()) == 1


def test_missing_binary_in_the_charm_blocks(ctx, fake, monkeypatch):
    def broken_install(binary):
        raise __import__("workload").WorkloadError(
            f"the charm has no daemon binary at {binary}; rebuild it"
        )

    monkeypatch.setattr(fake, "install", broken_install)
    state = ctx.run(ctx.on.install(), testing.State(leader=True, config={"ua_token": TOKEN}))
    assert isinstance(state.unit_status, testing.BlockedStatus)
    assert state.unit_status.message.startswith("cannot install the daemon: the charm has no")


# -- Ubuntu Pro ------------------------------------------------------------------------


def test_token_attaches_with_the_pro_client_once(ctx, fake):
    fake.pro_installed = True
    state = deployed(ctx, fake)
    ctx.run(ctx.on.update_status(), state)
    assert fake.pro_attaches == 1
    assert fake.pro_state(TOKEN) == (True, "")


def test_rejected_token_blocks_with_the_reason_and_never_shows_the_token(ctx, fake):
    fake.pro_installed = True
    fake.pro_rejects[TOKEN] = f"Invalid token {TOKEN}: token not found"
    state = deployed(ctx, fake)
    assert state.unit_status == testing.BlockedStatus(
        "Ubuntu Pro refused ua_token: Invalid token [redacted]: token not found; "
        "set a valid token: juju config aar ua_token=<token>"
    )
    attempts = fake.pro_attaches
    ctx.run(ctx.on.config_changed(), state)
    assert fake.pro_attaches == attempts, "a refused token is retried at update-status only"
    ctx.run(ctx.on.update_status(), state)
    assert fake.pro_attaches == attempts + 1
    new = dataclasses.replace(state, config={"ua_token": "another-token"})
    state = ctx.run(ctx.on.config_changed(), new)
    assert state.unit_status.message.startswith("serving ")


# -- storage_config --------------------------------------------------------------------

INVALID_STORAGE = [
    (
        "storage:\n  s3:\n    regoin: eu-west-3\n    bucket: aar0\n",
        'storage.s3.regoin (line 3, column 5): unknown key "regoin"; did you mean "region"?',
    ),
    (
        "storage:\n  s3:\n    bucket: aar0\n",
        'storage.s3 (line 3, column 5): missing required key "region"',
    ),
    (
        "storage:\n  fs: {}\n  s3: {region: eu-west-3, bucket: aar0}\n",
        "storage (line 2, column 3): choose exactly one storage backend, `fs` or `s3`",
    ),
    (
        "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n    access-key: AKIAEXAMPLE\n",
        "storage.s3.access-key (line 5, column 17): set access-key and secret-access-key "
        "together, or neither to use the AWS default credential chain",
    ),
    (
        "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n    cloudfront:\n"
        "      base-url: d1.cloudfront.net\n      keypair-id: K1\n      duration: 1 minute\n"
        "      private-key: |\n        -----BEGIN RSA PRIVATE KEY-----\n        MIIB\n"
        "        -----END RSA PRIVATE KEY-----\n",
        'storage.s3.cloudfront.duration (line 8, column 17): invalid duration "1 mi…" '
        "(8 characters): use a number and a unit, e.g. 30s, 1m, 1h30m",
    ),
    (
        "http:\n  addr: 0.0.0.0:1\n",
        'http (line 1, column 1): unknown key "http"; valid keys: storage',
    ),
    ("storage: [fs]\n", "storage (line 1, column 10): expected a mapping, found a list"),
    (
        "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n  s3: {}\n",
        'storage.s3 (line 5, column 3): duplicate key "s3"; it is already set on line 2',
    ),
]


@pytest.mark.parametrize(("document", "pinned"), INVALID_STORAGE)
def test_invalid_storage_config_blocks_with_the_daemons_error_and_keeps_serving(
    ctx, fake, document, pinned
):
    import aar_ext

    with pytest.raises(aar_ext.ConfigError) as refused:
        aar_ext.check_storage_config(document)
    error = str(refused.value)
    assert error == pinned, "the daemon's message changed: update the pinned text"
    assert "AKIAEXAMPLE" not in error
    state = deployed(ctx, fake)
    running, starts = fake.current_config(), fake.starts
    state = ctx.run(
        ctx.on.config_changed(),
        dataclasses.replace(state, config={"ua_token": TOKEN, "storage_config": document}),
    )
    assert state.unit_status == testing.BlockedStatus(
        f"invalid storage_config: {error} (fix it with juju config aar -f config.yaml; "
        "the registry keeps serving with its previous storage)"
    )
    assert fake.current_config() == running, "nothing is written for an invalid document"
    assert fake.running and fake.restarts == 0 and fake.starts == starts
    assert state.opened_ports == {testing.TCPPort(3000)}


S3_CLOUDFRONT = """\
storage:
  s3:
    region: eu-west-3
    bucket: aar0
    access-key: AKIAEXAMPLE
    secret-access-key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
    cloudfront:
      base-url: d1dfsdfjmcefekdotjm.cloudfront.net
      private-key: |
        -----BEGIN RSA PRIVATE KEY-----
        MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu
        -----END RSA PRIVATE KEY-----
      keypair-id: ADF443JOEF3423JF
      duration: 1m
"""


def test_valid_storage_after_an_invalid_one_recovers(ctx, fake):
    state = deployed(ctx, fake)
    bad = dataclasses.replace(state, config={"ua_token": TOKEN, "storage_config": "storage: {"})
    state = ctx.run(ctx.on.config_changed(), bad)
    assert isinstance(state.unit_status, testing.BlockedStatus)
    good = dataclasses.replace(state, config={"ua_token": TOKEN, "storage_config": S3_CLOUDFRONT})
    state = ctx.run(ctx.on.config_changed(), good)
    assert state.unit_status == testing.ActiveStatus(
        "serving 192.0.2.0:3000 · s3 aar0 (eu-west-3) via CloudFront · 0 clients, 0 publishers"
    )
    assert fake.restarts == 1
    assert "bucket: aar0" in fake.current_config()


def test_secrets_of_storage_config_stay_in_the_config_file(ctx, fake):
    state = deployed(ctx, fake, storage_config=S3_CLOUDFRONT)
    assert "wJalrXUtnFEMI" in fake.current_config()
    assert fake.paths.config_file.exists()
    assert "wJalrXUtnFEMI" not in state.unit_status.message
    assert all("wJalrXUtnFEMI" not in line.message for line in ctx.juju_log)


# -- scale -----------------------------------------------------------------------------


def test_second_unit_with_filesystem_storage_blocks_and_does_not_serve(ctx, fake, ams):
    relation = client_relation(ams["ams-east/0"])
    state = testing.State(leader=False, config={"ua_token": TOKEN}, relations=[relation])
    for event in (ctx.on.install(), ctx.on.config_changed(), ctx.on.start()):
        state = ctx.run(event, state)
    assert state.unit_status == testing.BlockedStatus(
        "filesystem storage serves from one unit only (the leader); configure S3 storage "
        "to run several (juju config aar -f config.yaml) or remove this one "
        "(juju remove-unit aar/0)"
    )
    assert not fake.running and not state.opened_ports
    assert state.get_relation(relation.id).local_unit_data.get("fingerprint") is None


def test_every_unit_serves_the_same_bucket_with_s3(ctx, fake):
    state = testing.State(
        leader=False, config={"ua_token": TOKEN, "storage_config": S3_CLOUDFRONT}
    )
    for event in (ctx.on.install(), ctx.on.config_changed(), ctx.on.start()):
        state = ctx.run(event, state)
    assert fake.running
    assert state.unit_status.message.startswith("serving 192.0.2.0:3000 · s3 aar0")


# -- relations -------------------------------------------------------------------------


def test_client_unit_is_trusted_read_only_and_gets_the_registry_data(ctx, fake, ams):
    identity = ams["ams-east/0"]
    relation = client_relation(identity)
    state = deployed(ctx, fake)
    state = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0),
        dataclasses.replace(state, relations=[relation]),
    )
    (cert,) = fake.trusted()
    assert cert["fingerprint"] == identity.fingerprint
    assert (cert["role"], cert["origin"]) == (
        "client",
        f"relation client:{relation.id} ams-east/0",
    )
    local = state.get_relation(relation.id).local_unit_data
    server = __import__("aar_ext").server_certificate(fake.paths.config_file)
    assert local["certificate"] == server["pem"]
    assert local["fingerprint"] == server["fingerprint"]
    assert (local["ip"], local["port"]) == ("192.0.2.0", "3000")
    assert state.unit_status.message.endswith("1 client, 0 publishers")


def test_publisher_unit_is_trusted_read_write(ctx, fake, ams):
    relation = client_relation(ams["ams/0"], endpoint="publisher", app="ams")
    state = deployed(ctx, fake)
    state = ctx.run(
        ctx.on.relation_joined(relation, remote_unit=0),
        dataclasses.replace(state, relations=[relation]),
    )
    assert [c["role"] for c in fake.trusted()] == ["publisher"]
    assert state.unit_status.message.endswith("0 clients, 1 publisher")


def test_mode_that_does_not_match_the_endpoint_blocks_naming_both(ctx, fake, ams):
    relation = client_relation(ams["ams-east/0"], modes={0: "publisher"})
    state = deployed(ctx, fake)
    state = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0),
        dataclasses.replace(state, relations=[relation]),
    )
    assert state.unit_status == testing.BlockedStatus(
        "ams-east/0 asks for publisher access on aar:client; relate "
        "ams-east:registry-publisher to aar:publisher instead (juju remove-relation "
        "ams-east aar:client; juju relate ams-east:registry-publisher aar:publisher)"
    )
    assert fake.trusted() == []


def test_invalid_certificate_blocks_naming_the_unit(ctx, fake, ams):
    relation = testing.Relation(
        endpoint="client",
        remote_app_name="ams-east",
        remote_units_data={0: {"certificate": "not a certificate", "mode": "client"}},
    )
    state = deployed(ctx, fake)
    state = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0),
        dataclasses.replace(state, relations=[relation]),
    )
    assert state.unit_status == testing.BlockedStatus(
        "invalid certificate from ams-east/0: no PEM certificate found in the certificate "
        "of ams-east/0 (aar:client): expected -----BEGIN CERTIFICATE-----"
    )


def test_departed_unit_is_removed_and_the_others_stay(ctx, fake, ams):
    relation = client_relation(ams["ams-east/0"], ams["ams-west/0"])
    state = deployed(ctx, fake)
    state = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=1),
        dataclasses.replace(state, relations=[relation]),
    )
    assert len(fake.trusted()) == 2
    relation = state.get_relation(relation.id)
    state = ctx.run(ctx.on.relation_departed(relation, remote_unit=1, departing_unit=1), state)
    assert [c["fingerprint"] for c in fake.trusted()] == [ams["ams-east/0"].fingerprint]


def test_broken_relation_removes_all_its_certificates_and_no_other(ctx, fake, ams):
    clients = client_relation(ams["ams-east/0"], ams["ams-west/0"])
    publisher = client_relation(ams["ams/0"], endpoint="publisher", app="ams")
    state = deployed(ctx, fake)
    state = dataclasses.replace(state, relations=[clients, publisher])
    state = ctx.run(ctx.on.relation_changed(publisher, remote_unit=0), state)
    entry = dict(fake.trust_store[ams["ams/0"].fingerprint])
    fake.trust_changes.clear()
    state = ctx.run(ctx.on.relation_broken(state.get_relation(clients.id)), state)
    assert [c["fingerprint"] for c in fake.trusted()] == [ams["ams/0"].fingerprint]
    assert fake.trust_store[ams["ams/0"].fingerprint] == entry
    assert all(fp != ams["ams/0"].fingerprint for _, fp in fake.trust_changes)


def test_manually_trusted_certificates_are_left_alone(ctx, fake, ams):
    relation = client_relation(ams["ams-east/0"])
    state = deployed(ctx, fake)
    fake.trust(ams["ams/1"].cert_pem, "client", "cli")
    state = ctx.run(
        ctx.on.relation_broken(relation), dataclasses.replace(state, relations=[relation])
    )
    assert [c["origin"] for c in fake.trusted()] == ["cli"]


def test_certificate_moving_from_client_to_publisher_changes_role(ctx, fake, ams):
    identity = ams["ams/0"]
    clients = client_relation(identity, app="ams")
    state = deployed(ctx, fake)
    state = ctx.run(
        ctx.on.relation_changed(clients, remote_unit=0),
        dataclasses.replace(state, relations=[clients]),
    )
    assert fake.trusted()[0]["role"] == "client"
    publisher = client_relation(identity, endpoint="publisher", app="ams")
    state = ctx.run(
        ctx.on.relation_changed(publisher, remote_unit=0),
        dataclasses.replace(state, relations=[clients, publisher]),
    )
    state = ctx.run(
        ctx.on.relation_broken(clients), dataclasses.replace(state, relations=[clients, publisher])
    )
    (cert,) = fake.trusted()
    assert (cert["role"], cert["origin"]) == (
        "publisher",
        f"relation publisher:{publisher.id} ams/0",
    )


def test_second_publisher_unit_blocks_and_keeps_the_first(ctx, fake, ams):
    one = client_relation(ams["ams/0"], endpoint="publisher", app="ams")
    state = deployed(ctx, fake)
    state = ctx.run(
        ctx.on.relation_changed(one, remote_unit=0), dataclasses.replace(state, relations=[one])
    )
    two = client_relation(
        ams["ams/0"], ams["ams/1"], endpoint="publisher", app="ams", relation_id=one.id
    )
    state = ctx.run(
        ctx.on.relation_changed(two, remote_unit=1), dataclasses.replace(state, relations=[two])
    )
    assert state.unit_status == testing.BlockedStatus(
        "the publisher endpoint takes one AMS unit, but ams/0, ams/1 are related; scale "
        "that AMS to one unit (juju remove-unit ams/1) and relate other AMS applications "
        "read-only (juju relate <ams>:registry-client aar:client)"
    )
    assert [c["fingerprint"] for c in fake.trusted()] == [ams["ams/0"].fingerprint]


def test_location_is_advertised_instead_of_the_ingress_address(ctx, fake, ams):
    relation = client_relation(ams["ams-east/0"])
    state = deployed(ctx, fake, location="registry.example.com")
    state = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0),
        dataclasses.replace(state, relations=[relation]),
    )
    assert state.get_relation(relation.id).local_unit_data["ip"] == "registry.example.com"
    assert "- registry.example.com" in fake.current_config()
    assert state.unit_status.message.startswith("serving registry.example.com:3000 ")


def test_cross_model_relation_advertises_its_ingress_address(ctx, fake, ams):
    relation = testing.Relation(
        endpoint="client",
        remote_app_name="ams-east",
        remote_units_data={0: {"certificate": ams["ams-east/0"].cert_pem, "mode": "client"}},
    )
    network = testing.Network("client", ingress_addresses=["203.0.113.7"])
    state = deployed(ctx, fake)
    state = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0),
        dataclasses.replace(state, relations=[relation], networks={network}),
    )
    assert state.get_relation(relation.id).local_unit_data["ip"] == "203.0.113.7"


def test_revoked_certificate_on_a_relation_blocks(ctx, fake, ams):
    relation = client_relation(ams["ams-east/0"])
    state = deployed(ctx, fake)
    state = dataclasses.replace(state, relations=[relation])
    state = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    ctx.run(
        ctx.on.action("revoke-client", params={"fingerprint": ams["ams-east/0"].fingerprint}),
        state,
    )
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == testing.BlockedStatus(
        "the certificate of ams-east/0 (aar:client) was revoked; give that AMS a new "
        "certificate, or remove the relation (juju remove-relation ams-east aar:client)"
    )


def test_unit_without_certificate_yet_is_waited_for_silently(ctx, fake):
    relation = testing.Relation(
        endpoint="client", remote_app_name="ams", remote_units_data={0: {}}
    )
    state = deployed(ctx, fake)
    state = ctx.run(
        ctx.on.relation_joined(relation, remote_unit=0),
        dataclasses.replace(state, relations=[relation]),
    )
    assert state.unit_status.message.startswith("serving ")
    assert fake.trusted() == []


# -- actions ---------------------------------------------------------------------------


def test_list_clients_shows_role_and_origin(ctx, fake, ams):
    relation = client_relation(ams["ams-east/0"])
    state = deployed(ctx, fake)
    state = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0),
        dataclasses.replace(state, relations=[relation]),
    )
    ctx.run(ctx.on.action("list-clients"), state)
    fp = ams["ams-east/0"].fingerprint
    assert ctx.action_results["count"] == 1
    entry = ctx.action_results["certificates"][fp]
    assert entry["role"] == "client"
    assert entry["origin"] == f"relation client:{relation.id} ams-east/0"
    assert entry["subject"] == "ams-east/0"


def test_revoke_client_is_permanent(ctx, fake, ams):
    state = deployed(ctx, fake)
    fake.trust(ams["ams/1"].cert_pem, "client", "cli")
    fp = ams["ams/1"].fingerprint
    ctx.run(ctx.on.action("revoke-client", params={"fingerprint": fp[:8]}), state)
    assert ctx.action_results["message"] == f"revoked {fp} permanently"
    assert fake.trusted() == []
    ctx.run(ctx.on.action("list-clients", params={"revoked": True}), state)
    assert fp in ctx.action_results["certificates"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"fingerprint": " "},
            "pass the certificate's fingerprint: juju run aar/0 "
            "revoke-client fingerprint=<sha256> (see the list-clients action)",
        ),
        ({"fingerprint": "abcd"}, "no trusted certificate has a fingerprint starting with abcd"),
    ],
)
def test_revoke_client_fails_clearly_on_bad_parameters(ctx, fake, params, message):
    state = deployed(ctx, fake)
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("revoke-client", params=params), state)
    assert failed.value.message == message


def test_get_certificate_gives_pem_fingerprint_and_address(ctx, fake):
    state = deployed(ctx, fake)
    ctx.run(ctx.on.action("get-certificate"), state)
    server = __import__("aar_ext").server_certificate(fake.paths.config_file)
    assert ctx.action_results["certificate"] == server["pem"]
    assert ctx.action_results["fingerprint"] == server["fingerprint"]
    assert ctx.action_results["address"] == "192.0.2.0:3000"


def test_get_certificate_before_the_first_start_fails_clearly(ctx, fake):
    state = ctx.run(ctx.on.install(), testing.State(leader=True))
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("get-certificate"), state)
    assert failed.value.message == (
        "the registry has not started yet, so it has no certificate: check the unit's "
        "status (juju status aar)"
    )


def test_add_client_trusts_a_hand_configured_ams(ctx, fake, ams):
    state = deployed(ctx, fake)
    ctx.run(
        ctx.on.action(
            "add-client", params={"certificate": ams["ams/1"].cert_pem, "role": "publisher"}
        ),
        state,
    )
    assert ctx.action_results["fingerprint"] == ams["ams/1"].fingerprint
    assert fake.trusted()[0]["role"] == "publisher"
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("add-client", params={"certificate": ams["ams/1"].key_pem}), state)
    assert failed.value.message.startswith("the certificate parameter is a private key")


def test_actions_do_not_restart_or_reconfigure(ctx, fake):
    state = deployed(ctx, fake)
    writes, restarts = fake.config_writes, fake.restarts
    for action in ("list-clients", "get-certificate"):
        ctx.run(ctx.on.action(action), state)
    assert (fake.config_writes, fake.restarts) == (writes, restarts)


# -- the token never leaks -------------------------------------------------------------


def test_token_never_reaches_logs_status_relation_data_or_action_results(ctx, fake, ams):
    fake.pro_installed = True
    fake.pro_rejects[TOKEN] = f"token {TOKEN} is expired"
    relation = client_relation(ams["ams-east/0"])
    seen = []
    state = deployed(ctx, fake)
    state = dataclasses.replace(state, relations=[relation])
    for event in (ctx.on.relation_changed(relation, remote_unit=0), ctx.on.update_status()):
        state = ctx.run(event, state)
        seen.append(state.unit_status.message)
        seen.append(repr(state.get_relation(relation.id).local_unit_data))
    for action in ("list-clients", "get-certificate"):
        ctx.run(ctx.on.action(action), state)
        seen.append(repr(ctx.action_results))
    seen += [line.message for line in ctx.juju_log]
    seen += [s.message for s in ctx.unit_status_history]
    assert all(TOKEN not in text for text in seen)
    assert any("[redacted]" in text for text in seen)
