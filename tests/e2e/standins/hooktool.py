"""Stand-ins for the Juju hook tools, `systemctl`, `journalctl` and `pro`, for one unit.

Installed as one executable per tool name (see `fakejuju.py`), each calling this file with
its own name first. The unit's model lives in `$FAKE_JUJU_STATE/model.json`, written by the
test and read and updated here, the way the Juju agent would answer the real tools; every
call is appended to `calls.jsonl` so the test can check what the charm ran.

`systemctl` really starts and stops the daemon: it reads `ExecStart` from the unit file the
charm wrote (under `$AAR_CHARM_SYSROOT`), runs it in its own session with its output going
to `journal.log`, and stops it with SIGTERM as systemd does.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ["FAKE_JUJU_STATE"])
MODEL = STATE / "model.json"


def load() -> dict:
    return json.loads(MODEL.read_text())


def save(model: dict) -> None:
    tmp = MODEL.with_suffix(".tmp")
    tmp.write_text(json.dumps(model, indent=1, sort_keys=True))
    tmp.replace(MODEL)


def out(value) -> None:
    print(json.dumps(value))


def fail(message: str, code: int = 1):
    print(f"ERROR {message}", file=sys.stderr)
    sys.exit(code)


def take(args: list[str], flag: str) -> str | None:
    """Remove `flag VALUE` from args and return VALUE."""
    if flag in args:
        i = args.index(flag)
        value = args[i + 1]
        del args[i : i + 2]
        return value
    return None


def relation(model: dict, ref: str | None) -> tuple[str, dict]:
    ref = ref or os.environ.get("JUJU_RELATION_ID") or fail("no relation id")
    rid = ref.rsplit(":", 1)[-1]
    if rid not in model["relations"]:
        fail(f'invalid value "{ref}" for option -r: relation not found')
    return rid, model["relations"][rid]


def positional(args: list[str]) -> list[str]:
    return [a for a in args if not a.startswith("--") and a != "-"] if args else []


# -- hook tools ------------------------------------------------------------------------


def config_get(model, args):
    keys = positional(args)
    out(model["config"].get(keys[0]) if keys else model["config"])


def is_leader(model, args):
    out(model["leader"])


def relation_ids(model, args):
    (endpoint,) = positional(args)
    out(
        [
            f"{endpoint}:{rid}"
            for rid, r in sorted(model["relations"].items())
            if r["endpoint"] == endpoint and not r.get("broken")
        ]
    )


def relation_list(model, args):
    _, rel = relation(model, take(args, "-r"))
    if "--app" in args:
        out(rel["remote_app"])
    else:
        out(sorted(u for u in rel["units"] if u != os.environ.get("JUJU_DEPARTING_UNIT")))


def relation_get(model, args):
    _, rel = relation(model, take(args, "-r"))
    app = "--app" in args
    rest = [a for a in args if a not in ("--format=json", "--app")]
    key = None
    if rest and rest[0] == "-":
        rest = rest[1:]
    elif len(rest) == 2:
        key, rest = rest[0], rest[1:]
    who = rest[0] if rest else os.environ.get("JUJU_REMOTE_UNIT", "")
    me = os.environ["JUJU_UNIT_NAME"]
    if app:
        data = rel["local_app"] if who == me.split("/")[0] else rel["remote_app_data"]
    elif who == me:
        data = rel["local_unit"]
    elif who in rel["units"]:
        data = rel["units"][who]
    else:
        fail(f"cannot read settings for unit {who!r} in relation {rel['endpoint']}")
    out(data.get(key) if key else data)


def relation_set(model, args):
    _, rel = relation(model, take(args, "-r"))
    target = "local_app" if "--app" in args else "local_unit"
    if "--app" in args and not model["leader"]:
        fail("cannot write application data: this unit is not the leader")
    for key, value in json.loads(sys.stdin.read() or "{}").items():
        if value == "":
            rel[target].pop(key, None)
        else:
            rel[target][key] = value
    save(model)


def network_get(model, args):
    rid = take(args, "-r")
    network = model["network"]
    address = network["relations"].get(rid, network["default"]) if rid else network["default"]
    out(
        {
            "bind-addresses": [
                {
                    "mac-address": "",
                    "interface-name": "lo",
                    "addresses": [
                        {"hostname": "", "value": network["default"], "cidr": "127.0.0.0/8"}
                    ],
                }
            ],
            "egress-subnets": [f"{address}/32"],
            "ingress-addresses": [address],
        }
    )


def status_set(model, args):
    app = any(a == "--application=True" for a in args)
    rest = [a for a in args if not a.startswith("--application")]
    status = rest[0]
    message = rest[2] if len(rest) > 2 and rest[1] == "--" else ""
    key = "app_status" if app else "unit_status"
    model[key] = {"status": status, "message": message}
    model.setdefault(f"{key}_history", []).append([status, message])
    save(model)


def status_get(model, args):
    app = any(a == "--application=True" for a in args)
    status = model.get("app_status" if app else "unit_status") or {
        "status": "unknown",
        "message": "",
    }
    body = {"status": status["status"], "message": status["message"], "status-data": {}}
    out({"application-status": {**body, "units": {}}} if app else body)


def juju_log(model, args):
    level = take(args, "--log-level") or "INFO"
    message = args[args.index("--") + 1] if "--" in args else " ".join(args)
    with (STATE / "juju-log.txt").open("a") as f:
        f.write(f"{level} {message}\n")


def ports(model, args):
    tool = args.pop(0)
    take(args, "--endpoints")
    if tool == "opened-ports":
        out(sorted(model["ports"]))
        return
    (port,) = positional(args)
    port = port if "/" in port else f"{port}/tcp"
    opened = set(model["ports"])
    (opened.add if tool == "open-port" else opened.discard)(port)
    model["ports"] = sorted(opened)
    save(model)


def application_version_set(model, args):
    model["workload_version"] = args[-1]
    save(model)


def goal_state(model, args):
    out(
        {
            "units": {os.environ["JUJU_UNIT_NAME"]: {"status": "active", "since": ""}},
            "relations": {},
        }
    )


def action_get(model, args):
    keys = positional(args)
    params = model["action"]["params"]
    out(params.get(keys[0]) if keys else params)


def action_set(model, args):
    for pair in args:
        key, _, value = pair.partition("=")
        model["action"]["results"][key] = value
    save(model)


def action_fail(model, args):
    model["action"]["failed"] = args[-1] if args and args[-1] != "--" else "action failed"
    save(model)


def action_log(model, args):
    model["action"].setdefault("log", []).append(args[-1])
    save(model)


# -- systemctl, journalctl, pro --------------------------------------------------------


def _unit_file(name: str) -> Path:
    root = Path(os.environ.get("AAR_CHARM_SYSROOT", "/"))
    return root / "etc/systemd/system" / f"{name.removesuffix('.service')}.service"


def _pid_file(name: str) -> Path:
    return STATE / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _service_pid(name: str) -> int | None:
    try:
        pid = int(_pid_file(name).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def _exec_start(name: str) -> list[str]:
    for line in _unit_file(name).read_text().splitlines():
        if line.startswith("ExecStart="):
            return shlex.split(line.removeprefix("ExecStart="))
    fail(f"Unit {name}.service has no ExecStart")
    return []


def _start(name: str) -> None:
    if _service_pid(name):
        return
    journal = (STATE / "journal.log").open("a")
    process = subprocess.Popen(
        _exec_start(name),
        stdin=subprocess.DEVNULL,
        stdout=journal,
        stderr=journal,
        start_new_session=True,
    )
    _pid_file(name).write_text(str(process.pid))
    # systemd's Type=simple: started as soon as it runs. A daemon that exits at once is
    # seen by `is-active` right after, as with systemd.
    time.sleep(0.3)


def _stop(name: str) -> None:
    pid = _service_pid(name)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def systemctl(model, args):
    flags = [a for a in args if a.startswith("-")]
    words = [a for a in args if not a.startswith("-")]
    command, names = words[0], words[1:]
    enabled = set(model.setdefault("systemd_enabled", []))
    for name in names:
        if command != "daemon-reload" and not _unit_file(name).exists():
            fail(f"Unit {name}.service not found.", 5)
    if command == "daemon-reload":
        return
    for name in names:
        if command == "is-active":
            active = _service_pid(name) is not None
            if "--quiet" not in flags:
                print("active" if active else "inactive")
            sys.exit(0 if active else 3)
        elif command == "start":
            _start(name)
        elif command == "stop":
            _stop(name)
        elif command == "restart":
            _stop(name)
            _start(name)
        elif command == "enable":
            enabled.add(name)
        elif command == "disable":
            enabled.discard(name)
        else:
            fail(f"systemctl stand-in: unsupported command {command}")
    model["systemd_enabled"] = sorted(enabled)
    save(model)


def journalctl(model, args):
    lines = int(take(args, "--lines") or 10)
    try:
        text = (STATE / "journal.log").read_text()
    except FileNotFoundError:
        text = ""
    print("\n".join(text.splitlines()[-lines:]))


def pro(model, args):
    """`pro` with a subscription service that knows the tokens in model["pro"]["valid"]."""
    state = model.setdefault("pro", {"valid": [], "attached": False})
    if args[:1] == ["status"]:
        out({"attached": state["attached"]})
    elif args[:1] == ["detach"]:
        state["attached"] = False
    elif args[:1] == ["attach"]:
        config = take(args, "--attach-config")
        token = ""
        if config:
            line = Path(config).read_text().strip()
            token = json.loads(line.split(":", 1)[1])
        if token in state["valid"]:
            state["attached"] = True
            out({"result": "success", "errors": []})
        else:
            save(model)
            out(
                {
                    "result": "failure",
                    "errors": [
                        {
                            "message": f"Invalid token {token}: the contract server refused it",
                            "message_code": "attach-invalid-token",
                        }
                    ],
                }
            )
            sys.exit(1)
    save(model)


TOOLS = {
    "config-get": config_get,
    "is-leader": is_leader,
    "relation-ids": relation_ids,
    "relation-list": relation_list,
    "relation-get": relation_get,
    "relation-set": relation_set,
    "network-get": network_get,
    "status-set": status_set,
    "status-get": status_get,
    "juju-log": juju_log,
    "open-port": lambda m, a: ports(m, ["open-port", *a]),
    "close-port": lambda m, a: ports(m, ["close-port", *a]),
    "opened-ports": lambda m, a: ports(m, ["opened-ports", *a]),
    "application-version-set": application_version_set,
    "goal-state": goal_state,
    "action-get": action_get,
    "action-set": action_set,
    "action-fail": action_fail,
    "action-log": action_log,
    "systemctl": systemctl,
    "journalctl": journalctl,
    "pro": pro,
}


def main() -> None:
    tool, args = sys.argv[1], sys.argv[2:]
    with (STATE / "calls.jsonl").open("a") as f:
        f.write(json.dumps([tool, *args]) + "\n")
    TOOLS[tool](load(), args)


if __name__ == "__main__":
    main()
