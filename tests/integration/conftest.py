"""Fixtures for the suite that runs the charm under a real Juju controller (Jubilant).

It runs only when asked to and able to: `AAR_INTEGRATION=1`, the `juju` client on PATH with
a controller it can reach, and the settings below. Anywhere else (CI, a laptop without
Juju) every test is skipped with the reason, so the suite is collected and never fails
for want of a controller.

Environment:
  AAR_INTEGRATION=1            run this suite (unset: skipped)
  AAR_UA_TOKEN                 an Ubuntu Pro token the units can attach with
  AAR_S3_ENDPOINT              an S3-compatible server the Juju machines reach, e.g.
                               http://10.0.0.1:9000 (MinIO); the bucket must exist
  AAR_S3_BUCKET                the bucket (emptied by nobody: use a fresh one)
  AAR_S3_ACCESS_KEY, AAR_S3_SECRET_KEY   its credentials
  AAR_S3_REGION                default us-east-1
  AAR_CHARM                    the built .charm (default: the one scripts/build-charm.sh
                               names for this machine, at the repository root)
  AAR_TRUST_BOUND              seconds within which every unit must refuse a revoked
                               certificate (default 5)
  AAR_INTEGRATION_KEEP=1       keep the temporary model afterwards, to look at it
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).resolve().parent / "ams_standin"
REQUIRED = ("AAR_UA_TOKEN", "AAR_S3_ENDPOINT", "AAR_S3_BUCKET", "AAR_S3_ACCESS_KEY")


def why_not() -> str:
    """Why this suite cannot run here, or "" when it can."""
    if not os.environ.get("AAR_INTEGRATION"):
        return (
            "AAR_INTEGRATION is not set: this suite needs a Juju controller and an S3 "
            "server (tests/integration/conftest.py lists the settings)"
        )
    juju = shutil.which("juju")
    if juju is None:
        return "AAR_INTEGRATION is set but the juju client is not on PATH"
    try:
        found = subprocess.run(
            [juju, "controllers", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "juju controllers did not answer within 60s"
    controllers = {}
    if found.returncode == 0:
        try:
            controllers = json.loads(found.stdout or "{}").get("controllers") or {}
        except ValueError:
            controllers = {}
    if not controllers:
        said = found.stderr.strip() or "it lists none"
        return f"no Juju controller is reachable (juju controllers: {said})"
    missing = [name for name in (*REQUIRED, "AAR_S3_SECRET_KEY") if not os.environ.get(name)]
    if missing:
        return f"set {', '.join(missing)} (tests/integration/conftest.py says what each is)"
    return ""


@pytest.fixture(scope="session")
def juju():
    """A temporary model on the current controller, destroyed afterwards."""
    reason = why_not()
    if reason:
        pytest.skip(reason)
    import jubilant  # only where the suite runs: collecting it elsewhere needs no Juju

    with jubilant.temp_model(keep=bool(os.environ.get("AAR_INTEGRATION_KEEP"))) as model:
        model.wait_timeout = 20 * 60
        yield model


@pytest.fixture(scope="session")
def aar_charm(juju) -> Path:
    """The .charm scripts/build-charm.sh built (the suite does not build it)."""
    given = os.environ.get("AAR_CHARM")
    if given:
        path = Path(given)
    else:
        script = ROOT / "scripts" / "build-charm.sh"
        name = subprocess.run([script, "--name"], capture_output=True, text=True, check=True)
        path = ROOT / name.stdout.strip()
    if not path.is_file():
        pytest.fail(f"{path} is missing: build it with scripts/build-charm.sh")
    return path


@pytest.fixture(scope="session")
def standin_charm(juju, tmp_path_factory) -> Path:
    """The AMS stand-in, zipped as a charm: hooks in plain Python, nothing to install."""
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    machine = arch.stdout.strip() or "amd64"
    path = tmp_path_factory.mktemp("standin") / "ams-standin.charm"
    manifest = "bases:\n" + "".join(
        f"- name: ubuntu\n  channel: '{channel}'\n  architectures: [{machine}]\n"
        for channel in ("22.04", "24.04")
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(STANDIN.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                info = zipfile.ZipInfo(str(file.relative_to(STANDIN)))
                info.external_attr = (file.stat().st_mode & 0xFFFF) << 16  # type and mode
                archive.writestr(info, file.read_bytes(), zipfile.ZIP_DEFLATED)
        archive.writestr("manifest.yaml", manifest)
    return path


@pytest.fixture(scope="session")
def s3_config() -> str:
    """storage_config for the S3-compatible server of the environment."""
    env = os.environ
    return (
        "storage:\n"
        "  s3:\n"
        f"    region: {env.get('AAR_S3_REGION') or 'us-east-1'}\n"
        f"    bucket: {env['AAR_S3_BUCKET']}\n"
        f"    endpoint: {env['AAR_S3_ENDPOINT']}\n"
        "    path-style: true\n"
        f"    access-key: {env['AAR_S3_ACCESS_KEY']}\n"
        f"    secret-access-key: {env['AAR_S3_SECRET_KEY']}\n"
    )
