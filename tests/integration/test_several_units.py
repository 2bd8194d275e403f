"""Two aar units on one S3 bucket under a real Juju: one fingerprint, one trust store.

aar is deployed from the built .charm with S3 storage, two AMS stand-ins relate on
`aar:publisher` and `aar:client`, aar is scaled to two units, and then:

* every aar unit's relation data (as the AMS side reads it) carries the same certificate
  and fingerprint, and each unit serves that certificate;
* the client stand-in's certificate is revoked through one unit's `revoke-client` action,
  and the other unit refuses it (403) within the bound, on a kept-alive connection.

Skipped unless a controller and the settings of conftest.py are there (see docs/charm.md,
"Several units").
"""

from __future__ import annotations

import json
import os
import shlex
import time

import jubilant
import pytest

PUBLISHER, CLIENT = "ams-publisher", "ams-client"


def aar_units(status: jubilant.Status) -> list[str]:
    return sorted(status.apps["aar"].units)


def two_units_active(status: jubilant.Status) -> bool:
    return jubilant.all_active(status) and len(aar_units(status)) == 2


def registry_data(juju: jubilant.Juju, ams_unit: str) -> dict[str, dict]:
    """What each aar unit put in the relation, as the AMS unit on the other side reads it."""
    info = juju.show_unit(ams_unit)
    return {
        unit: dict(data.data)
        for relation in info.relation_info
        if relation.endpoint.startswith("registry-")
        for unit, data in relation.related_units.items()
        if unit.startswith("aar/")
    }


def probe(juju: jubilant.Juju, ams_unit: str, url: str, fingerprint: str, *args: str) -> dict:
    """Run the stand-in's probe on its unit (its client certificate, the server pinned)."""
    command = shlex.join(["python3", "src/probe.py", url, fingerprint, *args])
    task = juju.exec(f'cd "$CHARM_DIR" && {command}', unit=ams_unit)
    return json.loads(task.stdout)


def client_fingerprint(status: jubilant.Status, unit: str) -> str:
    return status.apps[unit.split("/")[0]].units[unit].workload_status.message.split()[-1]


@pytest.fixture(scope="module")
def deployment(juju, aar_charm, standin_charm, s3_config):
    juju.deploy(
        aar_charm,
        "aar",
        config={"ua_token": os.environ["AAR_UA_TOKEN"], "storage_config": s3_config},
    )
    juju.deploy(standin_charm, PUBLISHER)
    juju.deploy(standin_charm, CLIENT)
    juju.integrate("aar:publisher", f"{PUBLISHER}:registry-publisher")
    juju.integrate("aar:client", f"{CLIENT}:registry-client")
    juju.wait(jubilant.all_active, error=jubilant.any_error)
    juju.add_unit("aar")
    return juju.wait(two_units_active, error=jubilant.any_error)


def test_every_unit_shows_and_serves_one_fingerprint(juju, deployment):
    for ams_unit in (f"{PUBLISHER}/0", f"{CLIENT}/0"):
        data = registry_data(juju, ams_unit)
        assert sorted(data) == aar_units(deployment), data
        fingerprints = {d["fingerprint"] for d in data.values()}
        certificates = {d["certificate"] for d in data.values()}
        assert len(fingerprints) == 1 and len(certificates) == 1, data
        (fingerprint,) = fingerprints
        for unit, unit_data in data.items():
            url = f"https://{unit_data['ip']}:{unit_data['port']}/1.0/applications"
            answer = probe(juju, ams_unit, url, fingerprint)
            assert answer["first"] == 200, (unit, answer)


def test_a_revocation_on_one_unit_is_enforced_by_the_other_within_the_bound(juju, deployment):
    bound = float(os.environ.get("AAR_TRUST_BOUND") or 5)
    first, other = aar_units(deployment)
    client = f"{CLIENT}/0"
    revoked = client_fingerprint(deployment, client)
    data = registry_data(juju, client)[other]
    url = f"https://{data['ip']}:{data['port']}/1.0/applications"
    # Started before the revocation on a kept-alive connection; it records the wall-clock
    # time of the first 403 (LXD containers and VMs share the host's synchronised clock).
    log = "/tmp/aar-probe.json"
    until = ["--until", "403", "--timeout", str(bound + 60)]
    command = shlex.join(["python3", "src/probe.py", url, data["fingerprint"], *until])
    juju.exec(
        f'cd "$CHARM_DIR" && setsid sh -c {shlex.quote(command)} > {log} 2>&1 < /dev/null &',
        unit=client,
    )
    time.sleep(2)
    juju.run(first, "revoke-client", {"fingerprint": revoked})
    revoked_at = time.time()  # the action has returned: the revocation is written
    answer: dict = {}
    deadline = time.monotonic() + bound + 90
    while time.monotonic() < deadline:
        out = juju.exec(f"cat {log}", unit=client).stdout.strip()
        if out:
            answer = json.loads(out)
            break
        time.sleep(2)
    assert answer.get("first") == 200, f"the client was not trusted on {other} before: {answer}"
    assert answer.get("seen_at") is not None, f"{other} never refused the revoked client"
    lag = answer["seen_at"] - revoked_at
    assert lag <= bound, f"{other} refused the revoked client {lag:.1f}s after, over {bound}s"
    # The publisher, not revoked, keeps its access on both units.
    for unit, unit_data in registry_data(juju, f"{PUBLISHER}/0").items():
        url = f"https://{unit_data['ip']}:{unit_data['port']}/1.0/applications"
        assert probe(juju, f"{PUBLISHER}/0", url, unit_data["fingerprint"])["first"] == 200, unit
