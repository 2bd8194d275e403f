"""The deployment story of issue 4, run on the built .charm without a Juju controller.

install → ua_token → an AMS publisher relates (its data JSON-encoded, as the reactive AMS
charm sends it), uploads and publishes over mTLS → an AMS in another model relates as a
client (raw data) and downloads it → that client departs and is refused at
its next request → an invalid storage_config blocks while the registry keeps serving → a
valid one recovers → actions → upgrade-charm keeps everything → stop leaves the data.
"""

from __future__ import annotations

import base64
import hashlib
import json
import lzma
import os
import socket
import subprocess
from pathlib import Path

import pytest

from certs import make_identity
from fakejuju import Ams, Unit
from state import holdings

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "C7vQ9xExampleProToken"


def built_charm() -> Path:
    """The archive scripts/build-charm.sh builds here: it is named for this architecture."""
    script = ROOT / "scripts" / "build-charm.sh"
    name = subprocess.run([script, "--name"], capture_output=True, text=True, check=True)
    return ROOT / name.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unit(tmp_path):
    charm = built_charm()
    if not charm.exists():
        pytest.fail(f"{charm.name} is missing: build it with scripts/build-charm.sh")
    machine = Unit(charm, tmp_path)
    model = machine.load()
    model["pro"] = {"valid": [TOKEN], "attached": False}
    machine.save(model)
    yield machine
    machine.stop_daemon()


def registry_of(unit: Unit, rid: int) -> tuple[str, int, str]:
    data = unit.relation(rid)["local_unit"]
    return data["ip"], int(data["port"]), data["fingerprint"]


def holds(unit: Unit) -> str:
    """The end of the Active message: ` · ` and what `aar status` reports, "" without it.

    Asked of the installed daemon with the charm's own config file, as the charm asks it;
    a daemon without `aar status` leaves the message as it was.
    """
    result = subprocess.run(
        [
            str(unit.sysroot / "usr/local/bin/aar"),
            "--config",
            str(unit.sysroot / "etc/aar/aar.yaml"),
            "status",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if result.returncode != 0:
        return ""
    said = holdings(json.loads(result.stdout))
    return f" · {said}" if said else ""


def test_deployment_story(unit, tmp_path):
    port = free_port()
    unit.configure(port=port)

    # juju deploy: install, config-changed, start.
    for hook in ("install", "leader-elected", "config-changed", "start"):
        unit.hook(hook)
    assert unit.status == ("blocked", "set the Ubuntu Pro token: juju config aar ua_token=<token>")
    assert unit.daemon_pid() is None
    assert (unit.sysroot / "usr/local/bin/aar").exists()
    assert unit.load()["workload_version"] == "0.1.0"

    # juju config aar ua_token=<token>: attached with the pro client, served.
    unit.configure(ua_token="not-a-valid-token")
    unit.hook("config-changed")
    status, message = unit.status
    assert status == "blocked"
    assert message == (
        "Ubuntu Pro refused ua_token: Invalid token [redacted]: the contract server refused "
        "it; set a valid token: juju config aar ua_token=<token>"
    )
    unit.configure(ua_token=TOKEN)
    unit.hook("config-changed")
    assert unit.load()["pro"]["attached"] is True
    state_dir = unit.sysroot / "var/lib/aar"
    assert unit.status == (
        "active",
        f"serving 127.0.0.1:{port} · fs {state_dir}/data · 0 clients, 0 publishers" + holds(unit),
    )
    pid = unit.daemon_pid()
    assert pid is not None
    assert unit.load()["ports"] == [f"{port}/tcp"]
    assert "aar" in unit.load()["systemd_enabled"]
    assert oct((unit.sysroot / "etc/aar/aar.yaml").stat().st_mode & 0o777) == "0o600"

    # juju relate ams:registry-publisher aar:publisher. The AMS charm is a reactive charm:
    # every value it publishes is JSON-encoded (charms.reactive's Endpoint).
    publisher = make_identity("ams/0")
    pub_cert, pub_key = publisher.write(tmp_path)
    rid_pub = unit.add_relation("publisher", "ams")
    unit.join(
        rid_pub,
        "ams/0",
        {"certificate": json.dumps(publisher.cert_pem), "mode": json.dumps("publisher")},
    )
    host, served_port, fingerprint = registry_of(unit, rid_pub)
    assert (host, served_port) == ("127.0.0.1", port)
    local = unit.relation(rid_pub)["local_unit"]
    assert local["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert unit.status == (
        "active",
        f"serving 127.0.0.1:{port} · fs {state_dir}/data · 0 clients, 1 publisher" + holds(unit),
    )

    # The publisher AMS uploads and publishes an application over mTLS.
    ams0 = Ams(pub_cert, pub_key, host, served_port, fingerprint)
    status, info = ams0.json("GET", "/1.0")
    assert (status, info["metadata"]["auth"], info["metadata"]["role"]) == (
        200,
        "trusted",
        "publisher",
    )
    assert info["metadata"]["server_fingerprint"] == fingerprint
    image = os.urandom(3 * 1024 * 1024 + 17)
    digest = ams0.upload(image)
    manifest = "name: game\ninstance-type: a4.3\nboot-package: com.example.game\ntags: [eu]\n"
    status, published = ams0.json(
        "POST",
        "/1.0/applications/game/versions",
        {"manifest": manifest, "images": {"amd64": digest}},
    )
    assert status == 201, published
    assert published["metadata"]["version"] == 1

    # juju offer aar:client; juju relate ams-east:registry-client <controller>/<model>.aar
    # (this AMS sends its data raw, as a hand-written or ops-based charm would): the offer is
    # reached at the relation's own ingress address (127.0.0.2 stands for the address the
    # other model sees).
    client = make_identity("ams-east/0")
    client_cert, client_key = client.write(tmp_path)
    rid_client = unit.add_relation("client", "ams-east", ingress="127.0.0.2")
    unit.join(rid_client, "ams-east/0", {"certificate": client.cert_pem, "mode": "client"})
    host, served_port, fingerprint_seen = registry_of(unit, rid_client)
    assert (host, fingerprint_seen) == ("127.0.0.2", fingerprint)
    assert unit.status[1].endswith("· 1 client, 1 publisher" + holds(unit))

    east = Ams(client_cert, client_key, host, served_port, fingerprint)
    status, apps = east.json("GET", "/1.0/applications?tags=eu")
    assert status == 200
    assert [a["name"] for a in apps["metadata"]] == ["game"]
    status, _, body = east.request("GET", "/1.0/applications/game/versions/1/images/amd64")
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == digest.removeprefix("sha256:")
    status, _ = east.json("DELETE", "/1.0/applications/game")
    assert status == 403, "a client relation is read-only"

    # The client unit departs: refused at its next request, on the same connection.
    unit.depart(rid_client, "ams-east/0")
    status, _ = east.json("GET", "/1.0/applications")
    assert status == 403
    assert unit.status[1].endswith("· 0 clients, 1 publisher" + holds(unit))
    east.close()

    # An invalid storage_config blocks with the daemon's error; the registry keeps serving.
    unit.configure(storage_config="storage:\n  s3:\n    regoin: eu-west-3\n    bucket: aar0\n")
    unit.hook("config-changed")
    assert unit.status == (
        "blocked",
        'invalid storage_config: storage.s3.regoin (line 3, column 5): unknown key "regoin"; '
        'did you mean "region"? (fix it with juju config aar -f config.yaml; the registry '
        "keeps serving with its previous storage)",
    )
    assert unit.daemon_pid() == pid
    status, apps = ams0.json("GET", "/1.0/applications")
    assert (status, [a["name"] for a in apps["metadata"]]) == (200, ["game"])

    # A valid one recovers: the config changes, the daemon restarts once, the data stays.
    unit.configure(
        storage_config=f"storage:\n  fs:\n    root-directory: {state_dir}/data\n"
        "    min-free: 1MiB\n"
    )
    unit.hook("config-changed")
    assert unit.status == (
        "active",
        f"serving 127.0.0.1:{port} · fs {state_dir}/data · 0 clients, 1 publisher" + holds(unit),
    )
    new_pid = unit.daemon_pid()
    assert new_pid not in (None, pid)
    status, apps = ams0.json("GET", "/1.0/applications")
    assert (status, [a["name"] for a in apps["metadata"]]) == (200, ["game"])
    unit.hook("update-status")
    assert unit.daemon_pid() == new_pid, "an unchanged config does not restart"

    # Actions.
    results, failed = unit.run_action("list-clients")
    assert failed is None
    assert results["count"] == "1"
    assert results[f"certificates.{publisher.fingerprint}.role"] == "publisher"
    assert results[f"certificates.{publisher.fingerprint}.origin"] == (
        f"relation publisher:{rid_pub} ams/0"
    )
    results, failed = unit.run_action("get-certificate")
    assert failed is None
    assert results["fingerprint"] == fingerprint
    assert results["address"] == f"127.0.0.1:{port}"
    _, failed = unit.run_action("revoke-client", fingerprint="zz")
    assert failed.startswith('"zz" is not a certificate fingerprint')
    stranger = make_identity("ams-manual/0")
    results, failed = unit.run_action("add-client", certificate=stranger.cert_pem)
    assert failed is None
    assert results["fingerprint"] == stranger.fingerprint
    results, failed = unit.run_action("revoke-client", fingerprint=stranger.fingerprint)
    assert failed is None
    assert results["message"].startswith(f"revoked {stranger.fingerprint}")
    trust = json.loads((state_dir / "trust.json").read_text())
    assert [c["fingerprint"] for c in trust["revoked"]] == [stranger.fingerprint]

    # upgrade-charm keeps data and trust.
    unit.hook("upgrade-charm")
    assert unit.status[0] == "active"
    status, apps = ams0.json("GET", "/1.0/applications")
    assert (status, [a["name"] for a in apps["metadata"]]) == (200, ["game"])

    # The publisher relation is removed: its certificate goes, the registry stays.
    unit.depart(rid_pub, "ams/0")
    unit.broken(rid_pub)
    status, _ = ams0.json("GET", "/1.0/applications")
    assert status == 403
    ams0.close()

    # stop (juju remove-unit): the service stops, the data stays.
    unit.hook("stop")
    assert unit.daemon_pid() is None
    assert any((state_dir / "data").iterdir())
    assert (state_dir / "trust.json").exists()

    # The token never left the config: not in logs, statuses, relation data, action
    # results, commands run, or the daemon's journal.
    said = unit.everything_said()
    assert TOKEN not in said
    assert "not-a-valid-token" not in said
    pro_calls = [call for call in unit.calls() if call[0] == "pro"]
    assert any(call[1] == "attach" and "--attach-config" in call for call in pro_calls)


def test_second_unit_with_filesystem_storage_waits_until_it_leads(unit):
    port = free_port()
    unit.configure(port=port, ua_token=TOKEN)
    model = unit.load()
    model["leader"] = False
    unit.save(model)
    for hook in ("install", "config-changed", "start"):
        unit.hook(hook)
    assert unit.status == (
        "blocked",
        "filesystem storage serves from one unit only (the leader); configure S3 storage to "
        "run several (juju config aar -f config.yaml) or remove this one "
        "(juju remove-unit aar/0)",
    )
    assert unit.daemon_pid() is None
    assert unit.load()["ports"] == []
    assert "aar" not in unit.load().get("systemd_enabled", [])

    # The leader goes away and this unit is elected: it serves, enabled for reboots.
    model = unit.load()
    model["leader"] = True
    unit.save(model)
    unit.hook("leader-elected")
    assert unit.status[0] == "active"
    assert unit.daemon_pid() is not None
    assert "aar" in unit.load()["systemd_enabled"]
    unit.hook("stop")
    assert unit.daemon_pid() is None


def test_the_packed_charm_shares_its_dashboard_and_rules_with_the_collector(unit):
    """The dashboards and rule files travel in the .charm and are read from src/ there."""
    port = free_port()
    unit.configure(port=port, ua_token=TOKEN)
    for hook in ("install", "leader-elected", "config-changed", "start"):
        unit.hook(hook)
    assert unit.status[0] == "active"
    rid = unit.add_relation("cos-agent", "opentelemetry-collector")
    unit.join(rid, "opentelemetry-collector/0", {})
    data = json.loads(unit.relation(rid)["local_unit"]["config"])
    assert data["metrics_scrape_jobs"][0]["static_configs"] == [{"targets": ["127.0.0.1:3001"]}]
    (dashboard,) = data["dashboards"]
    assert json.loads(lzma.decompress(base64.b64decode(dashboard)))["uid"] == (
        "aar-registry-overview"
    )
    alerts = [r["alert"] for g in data["metrics_alert_rules"]["groups"] for r in g["rules"]]
    assert "AarDaemonDown" in alerts
    assert data["log_alert_rules"]["groups"][0]["name"] == ("registry_00000000_aar_aar_logs_rules")
    assert TOKEN not in unit.everything_said()
    unit.hook("stop")
