"""The Ubuntu Pro token and the storage credentials given as Juju user secrets.

`ua_token_secret` and `storage_secret` are secret-typed options; the secrets are the
model's (owner None in ops.testing: granted to the application), and one left out of the
State is one Juju would not let the charm read (removed, never granted or revoked).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import pytest
from ops import testing

import aar_ext
from conftest import TOKEN, client_relation, deployed

SECRET_TOKEN = "C9SecretProTokenFromJujuSecret"
ACCESS_KEY = "AKIASECRETEXAMPLEKEY"
SECRET_ACCESS_KEY = "wJalrXUtnFEMIsecretK7MDENGbPxRfiCYEXAMPLE"
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEXsecretPy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "-----END RSA PRIVATE KEY-----\n"
)
# Pieces of every secret value: none may appear outside the daemon's config file.
SECRET_PIECES = [SECRET_TOKEN, ACCESS_KEY, SECRET_ACCESS_KEY, "MIIBOgIBAAJBAKj34GkxFhD90"]

# storage_config without any credential: they come from storage_secret.
S3_WITHOUT_CREDENTIALS = """\
storage:
  s3:
    region: eu-west-3
    bucket: aar0
    cloudfront:
      base-url: d1dfsdfjmcefekdotjm.cloudfront.net
      keypair-id: ADF443JOEF3423JF
      duration: 1m
"""
S3_ONLY = "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n"
PLAIN_ACCESS_KEY = "AKIAPLAINOLDKEY"
S3_WITH_PLAIN_CREDENTIALS = (
    S3_ONLY + f"    access-key: {PLAIN_ACCESS_KEY}\n    secret-access-key: plainOldSecretValue\n"
)
STORAGE_CONTENT = {
    "access-key": ACCESS_KEY,
    "secret-access-key": SECRET_ACCESS_KEY,
    "cloudfront-private-key": PRIVATE_KEY,
}


def token_secret(content=None) -> testing.Secret:
    return testing.Secret({"token": SECRET_TOKEN} if content is None else content)


def storage_secret(content=None) -> testing.Secret:
    return testing.Secret(dict(STORAGE_CONTENT) if content is None else content)


def run_deploy(ctx, config, secrets, leader=True) -> testing.State:
    """install → config-changed → start with these options and granted secrets."""
    state = testing.State(leader=leader, config=config, secrets=secrets)
    for event in (ctx.on.install(), ctx.on.config_changed(), ctx.on.start()):
        state = ctx.run(event, state)
    return state


def unreadable(option: str, secret_id: str) -> str:
    return (
        f"cannot read {option} {secret_id}: the secret does not exist or is not granted to "
        f"aar; grant it (juju grant-secret {secret_id} aar) or set {option} to a secret of "
        f"this model (juju secrets; juju config aar {option}=secret:<id>)"
    )


def assert_nothing_leaks(ctx, state, caplog, fake, pieces=SECRET_PIECES, kept_in=()):
    """No secret value in a status, log record, relation data, or file but the config.

    `pieces`: what must not show; `kept_in`: files besides the config that hold it on
    purpose (the server key's own file).
    """
    shown = [state.unit_status.message, state.app_status.message]
    shown += [line.message for line in ctx.juju_log]
    shown += [record.getMessage() for record in caplog.records]
    for relation in state.relations:
        shown += [str(dict(relation.local_unit_data)), str(dict(relation.local_app_data))]
    text = "\n".join(shown)
    for piece in pieces:
        assert piece not in text
    for path in fake.paths.root.rglob("*"):
        if path.is_file() and path != fake.paths.config_file and path not in kept_in:
            content = path.read_text(errors="replace")
            assert not any(piece in content for piece in pieces), path


# -- given as secrets ------------------------------------------------------------------


def test_token_secret_serves_and_attaches_pro_with_its_token(ctx, fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.pro_installed = True
    secret = token_secret()
    state = run_deploy(ctx, {"ua_token_secret": secret.id}, [secret])
    assert state.unit_status.message.startswith("serving 192.0.2.0:3000 · fs ")
    assert fake.running and fake.pro_attaches == 1
    digest = hashlib.sha256(SECRET_TOKEN.encode()).hexdigest()
    assert fake.pro_record == {"token_sha256": digest, "error": ""}
    assert_nothing_leaks(ctx, state, caplog, fake)


def test_storage_secret_goes_into_the_rendered_config(ctx, fake, caplog):
    caplog.set_level(logging.DEBUG)
    secret = storage_secret()
    config = {
        "ua_token": TOKEN,
        "storage_config": S3_WITHOUT_CREDENTIALS,
        "storage_secret": secret.id,
    }
    state = run_deploy(ctx, config, [secret], leader=False)
    assert state.unit_status == testing.ActiveStatus(
        "serving 192.0.2.0:3000 · s3 aar0 (eu-west-3) via CloudFront · 0 clients, 0 publishers"
    )
    rendered = fake.current_config()
    for piece in SECRET_PIECES[1:]:
        assert piece in rendered
    assert "keypair-id: ADF443JOEF3423JF" in rendered, "the plain settings are kept"
    assert aar_ext.describe_config(rendered)["storage"]["cloudfront"]
    assert_nothing_leaks(ctx, state, caplog, fake)


def test_the_secret_wins_and_the_log_names_only_the_ignored_options(ctx, fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.pro_installed = True
    token, storage = (
        token_secret(),
        storage_secret({"access-key": ACCESS_KEY, "secret-access-key": SECRET_ACCESS_KEY}),
    )
    config = {
        "ua_token": TOKEN,
        "ua_token_secret": token.id,
        "storage_config": S3_WITH_PLAIN_CREDENTIALS,
        "storage_secret": storage.id,
    }
    state = run_deploy(ctx, config, [token, storage])
    rendered = fake.current_config()
    assert ACCESS_KEY in rendered and SECRET_ACCESS_KEY in rendered
    assert PLAIN_ACCESS_KEY not in rendered and "plainOldSecretValue" not in rendered
    assert fake.pro_record["token_sha256"] == hashlib.sha256(SECRET_TOKEN.encode()).hexdigest()
    logged = [line.message for line in ctx.juju_log]
    assert (
        f"ua_token is ignored: ua_token_secret {token.id} sets it; the secret wins "
        "(juju config aar --reset ua_token)"
    ) in logged
    for key in ("access-key", "secret-access-key"):
        assert (
            f"storage_config's storage.s3.{key} is ignored: storage_secret {storage.id} "
            "sets it; the secret wins (leave it out of storage_config)"
        ) in logged
    everything = "\n".join(logged + [r.getMessage() for r in caplog.records])
    for plain in (TOKEN, PLAIN_ACCESS_KEY, "plainOldSecretValue"):
        assert plain not in everything
    assert_nothing_leaks(ctx, state, caplog, fake)


def test_a_new_secret_revision_rerenders_the_config(ctx, fake):
    secret = storage_secret({"access-key": ACCESS_KEY, "secret-access-key": SECRET_ACCESS_KEY})
    config = {"ua_token": TOKEN, "storage_config": S3_ONLY, "storage_secret": secret.id}
    state = run_deploy(ctx, config, [secret])
    restarts = fake.restarts
    rotated = dataclasses.replace(
        secret, latest_content={"access-key": "AKIAROTATEDKEY", "secret-access-key": "rotated"}
    )
    state = dataclasses.replace(state, secrets=[rotated])
    state = ctx.run(ctx.on.secret_changed(rotated), state)
    rendered = fake.current_config()
    assert "AKIAROTATEDKEY" in rendered and ACCESS_KEY not in rendered
    assert fake.restarts == restarts + 1
    assert state.unit_status.message.startswith("serving 192.0.2.0:3000 · s3 aar0")


def test_actions_and_relation_data_carry_no_secret(ctx, fake, ams, caplog):
    caplog.set_level(logging.DEBUG)
    token, storage = token_secret(), storage_secret()
    relation = client_relation(ams["ams-east/0"])
    config = {
        "ua_token_secret": token.id,
        "storage_config": S3_WITHOUT_CREDENTIALS,
        "storage_secret": storage.id,
    }
    state = dataclasses.replace(run_deploy(ctx, config, [token, storage]), relations=[relation])
    state = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    assert state.get_relation(relation.id).local_unit_data["fingerprint"]
    results = []
    for action in ("get-certificate", "list-clients"):
        ctx.run(ctx.on.action(action), state)
        results.append(str(ctx.action_results))
    for piece in SECRET_PIECES:
        assert not any(piece in result for result in results)
    assert_nothing_leaks(ctx, state, caplog, fake)


# -- secrets the charm cannot use --------------------------------------------------------


def test_token_secret_not_granted_blocks_and_does_not_serve(ctx, fake, caplog):
    secret = token_secret()  # not in the State: Juju refuses to read it
    state = run_deploy(ctx, {"ua_token": TOKEN, "ua_token_secret": secret.id}, [])
    assert state.unit_status == testing.BlockedStatus(unreadable("ua_token_secret", secret.id))
    assert not fake.running and not state.opened_ports, "never started without a token"
    assert_nothing_leaks(ctx, state, caplog, fake)


def test_token_secret_revoked_blocks_but_the_running_registry_keeps_serving(ctx, fake):
    secret = token_secret()
    state = run_deploy(ctx, {"ua_token_secret": secret.id}, [secret])
    assert fake.running
    state = ctx.run(ctx.on.update_status(), dataclasses.replace(state, secrets=[]))
    assert state.unit_status == testing.BlockedStatus(unreadable("ua_token_secret", secret.id))
    assert fake.running and fake.stops == 0
    assert state.opened_ports == {testing.TCPPort(3000)}


def test_token_secret_without_the_token_key_blocks(ctx, fake, caplog):
    secret = token_secret({"ua_token": SECRET_TOKEN})
    state = run_deploy(ctx, {"ua_token_secret": secret.id}, [secret])
    assert state.unit_status == testing.BlockedStatus(
        f"ua_token_secret {secret.id} has no token key: put the Ubuntu Pro token in it "
        f"(juju update-secret {secret.id} token=<token>)"
    )
    assert not fake.running
    assert_nothing_leaks(ctx, state, caplog, fake)


def test_storage_secret_not_granted_blocks_and_keeps_the_previous_storage(ctx, fake):
    state = deployed(ctx, fake)
    running = fake.current_config()
    secret = storage_secret()
    config = {"ua_token": TOKEN, "storage_config": S3_ONLY, "storage_secret": secret.id}
    state = ctx.run(ctx.on.config_changed(), dataclasses.replace(state, config=config))
    assert state.unit_status == testing.BlockedStatus(unreadable("storage_secret", secret.id))
    assert fake.current_config() == running and fake.running


@pytest.mark.parametrize(
    ("content", "document", "problem"),
    [
        (
            {"access-key": ACCESS_KEY},
            S3_ONLY,
            "has access-key but no secret-access-key: put both in it (juju update-secret "
            "{id} access-key=<key> secret-access-key=<secret>)",
        ),
        (
            {"secret-access-key": SECRET_ACCESS_KEY, "cloudfront-private-key": PRIVATE_KEY},
            S3_WITHOUT_CREDENTIALS,
            "has secret-access-key but no access-key: put both in it (juju update-secret "
            "{id} access-key=<key> secret-access-key=<secret>)",
        ),
        (
            {"acess-key": ACCESS_KEY, "secret-access-key": SECRET_ACCESS_KEY},
            S3_ONLY,
            "has unknown keys acess-key: it takes access-key, secret-access-key and "
            "cloudfront-private-key (juju update-secret {id} access-key=<key> "
            "secret-access-key=<secret> cloudfront-private-key#file=<key.pem>)",
        ),
        (
            dict(STORAGE_CONTENT),
            "",
            "has access-key, but storage_config has no storage.s3 section to put it in: "
            "configure S3 in storage_config (juju config aar -f config.yaml), or remove "
            "access-key from the secret (juju update-secret {id} …)",
        ),
        (
            dict(STORAGE_CONTENT),
            S3_ONLY,
            "has cloudfront-private-key, but storage_config has no storage.s3.cloudfront "
            "section to put it in: configure CloudFront in storage_config (juju config aar "
            "-f config.yaml), or remove cloudfront-private-key from the secret (juju "
            "update-secret {id} …)",
        ),
    ],
)
def test_storage_secret_that_does_not_fit_blocks_naming_option_and_id(
    ctx, fake, caplog, content, document, problem
):
    caplog.set_level(logging.DEBUG)
    secret = storage_secret(content)
    config = {"ua_token": TOKEN, "storage_config": document, "storage_secret": secret.id}
    state = run_deploy(ctx, config, [secret])
    expected = f"storage_secret {secret.id} " + problem.format(id=secret.id)
    assert state.unit_status == testing.BlockedStatus(expected)
    assert_nothing_leaks(ctx, state, caplog, fake)


def test_an_invalid_private_key_in_the_secret_names_its_key_not_its_value(ctx, fake, caplog):
    caplog.set_level(logging.DEBUG)
    secret = storage_secret(
        {**STORAGE_CONTENT, "cloudfront-private-key": "MIIBOgIBAAJBAKj34GkxFhD90"}
    )
    config = {
        "ua_token": TOKEN,
        "storage_config": S3_WITHOUT_CREDENTIALS,
        "storage_secret": secret.id,
    }
    state = run_deploy(ctx, config, [secret])
    message = state.unit_status.message
    assert isinstance(state.unit_status, testing.BlockedStatus)
    assert message.startswith(f"invalid cloudfront-private-key in storage_secret {secret.id}: ")
    assert_nothing_leaks(ctx, state, caplog, fake)


def test_an_error_in_the_plain_document_keeps_its_own_line_and_column(ctx, fake):
    secret = storage_secret({"access-key": ACCESS_KEY, "secret-access-key": SECRET_ACCESS_KEY})
    document = "storage:\n  s3:\n    regoin: eu-west-3\n    bucket: aar0\n"
    config = {"ua_token": TOKEN, "storage_config": document, "storage_secret": secret.id}
    state = run_deploy(ctx, config, [secret])
    assert state.unit_status == testing.BlockedStatus(
        'invalid storage_config: storage.s3.regoin (line 3, column 5): unknown key "regoin"; '
        'did you mean "region"? (fix it with juju config aar -f config.yaml; the registry '
        "keeps serving with its previous storage)"
    )
