"""The backup and restore actions, through the real workload code and an `aar` stand-in.

The machine is the stateful fake of conftest.py for the service, and the real
`workload.Workload` for the backup commands: they run, as subprocesses, an `aar` at the
machine's binary path that answers `backup` and `restore` with the daemon's flags, output
streams, messages and exit codes (`daemon/src/bin/aar.rs`, `daemon/src/cli/backup.rs`).
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
from ops import testing

import charm as charm_module
import workload
from conftest import FakeWorkload, deployed

STANDIN = """
import json, os, sys
calls = os.environ["AAR_STANDIN_CALLS"]
state = os.environ["AAR_STANDIN_STATE"]
mode = os.environ.get("AAR_STANDIN_MODE", "")
args = sys.argv[1:]
with open(calls, "a") as f:
    f.write(json.dumps(args) + "\\n")
assert args[0] == "--config" and os.path.exists(args[1]), args
command, rest = args[2], args[3:]
if mode == "unreadable-storage":
    sys.stderr.write("aar: opening storage at /srv/aar: Permission denied (os error 13)\\n")
    sys.exit(1)
if command == "backup":
    images = "2 images (2048 bytes)"
    if "--no-blobs" in rest:
        images = "no images (they stay in storage)"
    fd = os.open(rest[0], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"-----BEGIN PRIVATE KEY-----\\nserver key\\n" + b"x" * 4096)
    os.close(fd)
    sys.stderr.write(
        "backed up the server identity (fingerprint ab12), 1 trusted and 0 revoked "
        f"certificates, 3 version records and {images}\\n"
    )
elif command == "restore":
    if os.listdir(state) and "--force" not in rest:
        sys.stderr.write(
            "aar: the registry's state is not empty (a server key); restore into a fresh "
            "state directory, or pass --force to add the backup to it (the server key and "
            "certificate and the trust store are replaced)\\n"
        )
        sys.exit(1)
    print(
        "restored the server identity (fingerprint ab12), 1 trusted and 0 revoked "
        "certificates, 3 version records (0 already present) and 2 images (0 already present)"
    )
    if mode == "partial":
        print(
            'not restored: version 3 of "game": an image it uses is neither in the backup '
            "nor in storage; upload the image, then restore again"
        )
        sys.exit(1)
else:
    sys.exit(2)
"""


class Machine(FakeWorkload):
    """The fake machine, with the real workload code for backup and restore."""

    new_backup_path = workload.Workload.new_backup_path
    backup = workload.Workload.backup
    restore = workload.Workload.restore
    _aar = workload.Workload._aar

    def __init__(self, root: Path):
        super().__init__(root)
        # (the aar subcommand, whether the service ran while it did)
        self.commands: list[tuple[str, bool]] = []

    def install(self, binary: Path) -> bool:
        changed = super().install(binary)
        self.paths.binary.write_text(f"#!{sys.executable}\n{STANDIN}")
        self.paths.binary.chmod(0o755)
        return changed

    def _run(self, args, **kwargs):
        self.commands.append((args[3], self.running))
        return workload.Workload._run(self, args, **kwargs)


@pytest.fixture
def machine(tmp_path, monkeypatch) -> Machine:
    machine = Machine(tmp_path / "sysroot")
    monkeypatch.setattr(charm_module, "Workload", lambda: machine)
    monkeypatch.setenv("AAR_STANDIN_CALLS", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("AAR_STANDIN_STATE", str(machine.paths.state_directory))
    return machine


@pytest.fixture
def ctx(machine) -> testing.Context:
    return testing.Context(charm_module.AarCharm)


def calls(tmp_path: Path) -> list[list[str]]:
    lines = (tmp_path / "calls.jsonl").read_text().splitlines()
    return [json.loads(line)[2:] for line in lines]


def a_backup(tmp_path: Path) -> Path:
    path = tmp_path / "aar-0.backup"
    path.write_bytes(b"archive")
    return path


# -- backup ------------------------------------------------------------------------------


def test_backup_writes_a_new_root_only_file_while_serving(ctx, machine, tmp_path):
    state = deployed(ctx, machine)
    stops = machine.stops
    ctx.run(ctx.on.action("backup"), state)
    path = Path(ctx.action_results["path"])
    assert path.parent == machine.paths.root / "var/lib/aar-backups"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.name.startswith("aar-") and path.name.endswith("Z.backup")
    assert ctx.action_results["size"] == path.stat().st_size > 4096
    assert ctx.action_results["summary"] == (
        "backed up the server identity (fingerprint ab12), 1 trusted and 0 revoked "
        "certificates, 3 version records and 2 images (2048 bytes)"
    )
    assert calls(tmp_path) == [["backup", str(path)]]
    assert machine.commands[-1] == ("backup", True)
    assert (machine.running, machine.stops) == (True, stops)
    ctx.run(ctx.on.action("backup"), state)
    assert Path(ctx.action_results["path"]) != path, "a second backup keeps the first"


def test_backup_to_a_named_file_without_images(ctx, machine, tmp_path):
    state = deployed(ctx, machine)
    target = tmp_path / "offsite" / "aar.backup"
    target.parent.mkdir()
    ctx.run(ctx.on.action("backup", params={"path": str(target), "no-blobs": True}), state)
    assert ctx.action_results["path"] == str(target)
    assert ctx.action_results["size"] == target.stat().st_size
    assert ctx.action_results["summary"].endswith("no images (they stay in storage)")
    assert calls(tmp_path) == [["backup", str(target), "--no-blobs"]]


def test_backup_runs_with_the_units_config_file(ctx, machine, tmp_path):
    state = deployed(ctx, machine)
    ctx.run(ctx.on.action("backup"), state)
    line = (tmp_path / "calls.jsonl").read_text().splitlines()[0]
    assert json.loads(line)[:2] == ["--config", str(machine.paths.config_file)]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("relative.backup", "backup failed: path must be absolute (a file on the unit), not "),
        ("-", "backup failed: an action cannot stream a backup: pass a file on the unit"),
    ],
)
def test_backup_refuses_a_path_it_cannot_write_to(ctx, machine, tmp_path, path, message):
    state = deployed(ctx, machine)
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("backup", params={"path": path}), state)
    assert failed.value.message.startswith(message)
    assert not (tmp_path / "calls.jsonl").exists()


def test_backup_failure_gives_the_daemons_reason(ctx, machine, monkeypatch):
    state = deployed(ctx, machine)
    monkeypatch.setenv("AAR_STANDIN_MODE", "unreadable-storage")
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("backup"), state)
    assert failed.value.message == (
        "backup failed: opening storage at /srv/aar: Permission denied (os error 13)"
    )


def test_backup_before_the_registry_is_configured_fails_clearly(ctx, machine):
    machine.reject_config = "storage.fs.root: not a directory"
    state = ctx.run(ctx.on.install(), testing.State(leader=True))
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("backup"), state)
    assert failed.value.message == (
        "the registry is not configured yet, so there is nothing to back up"
    )


# -- restore -----------------------------------------------------------------------------


def test_restore_stops_the_registry_while_it_runs_and_starts_it_again(ctx, machine, tmp_path):
    state = deployed(ctx, machine)
    backup = a_backup(tmp_path)
    starts = machine.starts
    ctx.run(ctx.on.action("restore", params={"path": str(backup), "force": True}), state)
    assert ctx.action_results["summary"].startswith(
        "restored the server identity (fingerprint ab12), 1 trusted and 0 revoked"
    )
    assert calls(tmp_path) == [["restore", str(backup), "--force"]]
    assert machine.commands[-1] == ("restore", False)
    assert machine.running and machine.starts == starts + 1
    assert ctx.action_logs == ["stopping the registry to restore", "starting the registry again"]


def test_restore_over_a_used_registry_without_force_is_refused_and_serving_resumes(
    ctx, machine, tmp_path
):
    state = deployed(ctx, machine)
    (machine.paths.state_directory / "server.key").write_text("the unit's own key")
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("restore", params={"path": str(a_backup(tmp_path))}), state)
    assert failed.value.message.startswith(
        "restore failed: the registry's state is not empty (a server key); restore into a "
        "fresh state directory, or pass force=true to add the backup to it"
    )
    assert calls(tmp_path) == [["restore", str(tmp_path / "aar-0.backup")]]
    assert machine.running


def test_restore_in_part_fails_with_the_report_and_serving_resumes(
    ctx, machine, tmp_path, monkeypatch
):
    state = deployed(ctx, machine)
    monkeypatch.setenv("AAR_STANDIN_MODE", "partial")
    params = {"path": str(a_backup(tmp_path)), "force": True}
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("restore", params=params), state)
    message = failed.value.message
    assert message.startswith("restore failed: restored the server identity (fingerprint ab12)")
    assert message.endswith(
        'not restored: version 3 of "game": an image it uses is neither in the backup nor in '
        "storage; upload the image, then restore again"
    )
    assert machine.running


def test_restore_leaves_a_stopped_registry_stopped(ctx, machine, tmp_path):
    state = deployed(ctx, machine)
    machine.stop()
    starts = machine.starts
    ctx.run(
        ctx.on.action("restore", params={"path": str(a_backup(tmp_path)), "force": True}), state
    )
    assert machine.commands[-1] == ("restore", False)
    assert (machine.running, machine.starts) == (False, starts)
    assert ctx.action_logs == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "/nonexistent/aar-0.backup",
            "there is no backup file at /nonexistent/aar-0.backup on this unit: copy it "
            "there first, e.g. juju scp aar-0.backup aar/1:/tmp/",
        ),
        ("aar-0.backup", "path must be absolute (a file on the unit), not 'aar-0.backup'"),
        (" ", "pass the backup file: path=/path/to/file.backup"),
    ],
)
def test_restore_refuses_a_missing_file_before_stopping_anything(ctx, machine, path, message):
    state = deployed(ctx, machine)
    stops = machine.stops
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("restore", params={"path": path}), state)
    assert failed.value.message == message
    assert (machine.running, machine.stops) == (True, stops)
    assert [c for c, _ in machine.commands if c == "restore"] == []


def test_backup_and_restore_results_and_logs_carry_no_key(ctx, machine, tmp_path):
    state = deployed(ctx, machine)
    ctx.run(ctx.on.action("backup"), state)
    seen = [repr(ctx.action_results)]
    path = ctx.action_results["path"]
    ctx.run(ctx.on.action("restore", params={"path": path, "force": True}), state)
    seen += [repr(ctx.action_results), *ctx.action_logs]
    seen += [line.message for line in ctx.juju_log]
    assert b"PRIVATE KEY" in Path(path).read_bytes()
    assert all("PRIVATE KEY" not in text for text in seen)


def test_restore_before_the_registry_is_configured_fails_clearly(ctx, machine, tmp_path):
    machine.reject_config = "storage.fs.root: not a directory"
    state = ctx.run(ctx.on.install(), testing.State(leader=True))
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("restore", params={"path": str(a_backup(tmp_path))}), state)
    assert failed.value.message == "the registry is not configured yet: check juju status aar"
    assert not (tmp_path / "calls.jsonl").exists()
