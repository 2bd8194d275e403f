"""The real workload module's Ubuntu Pro handling, against the `pro` stand-in."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import workload

HOOKTOOL = Path(__file__).resolve().parents[1] / "e2e" / "standins" / "hooktool.py"
TOKEN = "C1ProTokenForWorkloadTests"


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A Workload whose `pro` is the stand-in subscription service."""
    bin_dir, state = tmp_path / "bin", tmp_path / "juju"
    bin_dir.mkdir()
    state.mkdir()
    wrapper = bin_dir / "pro"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {HOOKTOOL} pro "$@"\n')
    wrapper.chmod(0o755)
    (state / "model.json").write_text(json.dumps({"pro": {"valid": [TOKEN], "attached": False}}))
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_JUJU_STATE", str(state))
    return workload.Workload(workload.Paths(tmp_path / "sysroot")), state


def pro_model(state: Path) -> dict:
    return json.loads((state / "model.json").read_text())["pro"]


def pro_calls(state: Path) -> list[list[str]]:
    lines = (state / "calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_attach_passes_the_token_in_a_file_never_on_the_command_line(machine):
    wl, state = machine
    assert wl.pro_available()
    wl.pro_attach(TOKEN)
    assert pro_model(state)["attached"] is True
    assert wl.pro_state(TOKEN) == (True, "")
    assert all(TOKEN not in " ".join(call) for call in pro_calls(state))
    assert not list(wl.paths.charm_state.glob("*.yaml")), "the attach config is removed"
    record = (wl.paths.charm_state / "pro-attach.json").read_text()
    assert TOKEN not in record
    assert oct((wl.paths.charm_state / "pro-attach.json").stat().st_mode & 0o777) == "0o600"


def test_refused_token_raises_the_reason_with_the_token_redacted(machine):
    wl, _ = machine
    with pytest.raises(workload.ProAttachError) as refused:
        wl.pro_attach("bad-token-value")
    assert str(refused.value) == ("Invalid token [redacted]: the contract server refused it")
    assert wl.pro_state("bad-token-value") == (
        False,
        "Invalid token [redacted]: the contract server refused it",
    )
    assert wl.pro_state(TOKEN) == (False, "")


def test_a_new_token_replaces_the_charms_own_attachment(machine):
    wl, state = machine
    wl.pro_attach(TOKEN)
    model = json.loads((state / "model.json").read_text())
    model["pro"]["valid"].append("second-token")
    (state / "model.json").write_text(json.dumps(model))
    wl.pro_attach("second-token")
    assert ["pro", "detach", "--assume-yes"] in pro_calls(state)
    assert wl.pro_state("second-token") == (True, "")


def test_a_machine_attached_before_the_charm_keeps_its_subscription(machine):
    wl, state = machine
    model = json.loads((state / "model.json").read_text())
    model["pro"]["attached"] = True
    (state / "model.json").write_text(json.dumps(model))
    wl.pro_attach("any-token")
    assert [c for c in pro_calls(state) if c[1] in ("attach", "detach")] == []
    assert wl.pro_state("any-token") == (True, "")


# -- network interfaces (public_interface) -----------------------------------------------


def test_interface_address_of_loopback():
    assert workload.interface_address("lo") == "127.0.0.1"


def test_missing_interface_is_named_with_those_that_exist():
    with pytest.raises(workload.WorkloadError) as error:
        workload.interface_address("nosuchif0")
    message = str(error.value)
    assert message.startswith("network interface 'nosuchif0' does not exist on this machine")
    assert "lo" in message


def test_interface_name_too_long_for_the_kernel_is_refused_clearly():
    with pytest.raises(workload.WorkloadError) as error:
        workload.interface_address("x" * 40)
    assert "does not exist on this machine" in str(error.value)
