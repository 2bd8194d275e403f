"""The unit's side of the `cos-agent` relation (interface `cos_agent`).

The collector (opentelemetry-collector or grafana-agent) is a subordinate on the same
machine. Subordinate relations speak through unit data only: one key, `config`, holding a
JSON object with `metrics_scrape_jobs`, `metrics_alert_rules`, `log_alert_rules`,
`dashboards` (each one LZMA-compressed JSON, base64-encoded) and `log_slots`. The collector
scrapes the jobs from its side of the machine, ships the machine's logs (the aar service
logs to the journal), and forwards rules and dashboards to Prometheus, Loki and Grafana.

Nothing here reads the config, the trust store or any credential: the relation carries the
files beside this module, the unit's Juju topology and the loopback address of the metrics
listener, and nothing else.

No `ops` import: the charm hands in what Juju knows (`Topology`).
"""

from __future__ import annotations

import base64
import json
import lzma
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

RELATION = "cos-agent"
DATABAG_KEY = "config"
# The daemon's default `metrics.addr` (plain HTTP, loopback). The charm does not set it, so
# the daemon listens there; the collector runs on the same machine and reaches it.
METRICS_ADDR = "127.0.0.1:3001"
METRICS_PATH = "/metrics"

HERE = Path(__file__).parent
DASHBOARDS = HERE / "grafana_dashboards"
METRICS_RULES = HERE / "prometheus_alert_rules"
LOG_RULES = HERE / "loki_alert_rules"

# Written inside every selector of a PromQL rule, replaced by this application's topology
# so that each aar deployment alerts on its own series only.
TOPOLOGY = "%%juju_topology%%"
RULE_SUFFIXES = (".rule", ".rules", ".yaml", ".yml")
_NOT_IN_GROUP_NAME = re.compile(r"[^a-zA-Z0-9_:]")


@dataclass(frozen=True)
class Topology:
    """Where the unit sits in Juju: the labels the collector puts on its series."""

    model: str
    model_uuid: str
    application: str
    charm: str

    @property
    def identifier(self) -> str:
        """`<model>_<first 8 of the uuid>_<application>`, the collectors' rule file names."""
        return f"{self.model}_{self.model_uuid[:8]}_{self.application}"

    @property
    def labels(self) -> dict[str, str]:
        """The labels every alert carries."""
        return {
            "juju_model": self.model,
            "juju_model_uuid": self.model_uuid,
            "juju_application": self.application,
            "juju_charm": self.charm,
        }

    @property
    def matchers(self) -> str:
        """PromQL label matchers for this application's series (any unit).

        The charm name is left out: the collector labels scraped series with the model and
        the principal's application and unit, not its charm.
        """
        selected = ("juju_model", "juju_model_uuid", "juju_application")
        return ",".join(f"{key}={json.dumps(self.labels[key])}" for key in selected)


class RuleFileError(Exception):
    """A rule file shipped with the charm is not a Prometheus/Loki rule file."""


def _rule_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in RULE_SUFFIXES)


def read_rule_groups(path: Path) -> list[dict]:
    """The groups of one rule file in Prometheus's format (`groups: [{name, rules}]`)."""
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RuleFileError(f"{path.name}: not YAML: {e}") from None
    groups = document.get("groups") if isinstance(document, dict) else None
    if not isinstance(groups, list) or not groups:
        raise RuleFileError(f"{path.name}: expected `groups:`, a list of rule groups")
    for group in groups:
        if not isinstance(group, dict) or not group.get("name") or not group.get("rules"):
            raise RuleFileError(f"{path.name}: every group needs a name and rules")
        for rule in group["rules"]:
            if not isinstance(rule, dict) or not rule.get("alert") or not rule.get("expr"):
                raise RuleFileError(f"{path.name}: every rule needs an alert and an expr")
    return groups


def metrics_alert_rules(topology: Topology) -> dict:
    """The PromQL alert rules, scoped to this application and labelled with its topology."""
    groups = []
    for path in _rule_files(METRICS_RULES):
        for group in read_rule_groups(path):
            rules = []
            for rule in group["rules"]:
                rule = dict(rule)
                rule["expr"] = rule["expr"].replace(TOPOLOGY, topology.matchers)
                rule["labels"] = {**topology.labels, **(rule.get("labels") or {})}
                rules.append(rule)
            groups.append({"name": _group_name(topology, group["name"]), "rules": rules})
    return {"groups": groups}


def log_alert_rules(topology: Topology) -> dict:
    """The LogQL alert rules, left for the collector to scope.

    The daemon logs to the journal, which the collector ships under its own topology (not
    aar's), so these rules carry no aar topology: the collector adds its own, which is the
    one on the daemon's log lines. Each rule matches the daemon's own log format instead.
    A selector still needs one matcher that is not empty, hence `job=~".+"`.
    """
    groups = []
    for path in _rule_files(LOG_RULES):
        for group in read_rule_groups(path):
            rules = [
                {**rule, "expr": rule["expr"].replace(TOPOLOGY, 'job=~".+"')}
                for rule in group["rules"]
            ]
            groups.append({"name": _group_name(topology, group["name"]), "rules": rules})
    return {"groups": groups}


def _group_name(topology: Topology, name: str) -> str:
    # Prefixed with the topology so the groups of two aar applications do not collide; the
    # collectors recognise `<model>_<uuid8>_…rules` as already prefixed and keep it.
    full = f"{topology.identifier}_{name}"
    if not full.endswith("_rules"):
        full += "_rules"
    return _NOT_IN_GROUP_NAME.sub("_", full)


def encode_dashboard(dashboard: dict) -> str:
    """A dashboard as the interface carries it: JSON, LZMA (xz) compressed, base64."""
    data = json.dumps(dashboard).encode()
    # Preset 3: much faster than the default at every hook, a few percent larger; the
    # reader decompresses any preset.
    return base64.b64encode(lzma.compress(data, preset=3)).decode()


def dashboards(charm_name: str) -> list[str]:
    """Every dashboard beside this module, tagged with the charm's name, encoded."""
    encoded = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        tag = f"charm: {charm_name}"
        tags = [t for t in dashboard.get("tags", []) if t != tag]
        dashboard["tags"] = [*tags, tag]
        encoded.append(encode_dashboard(dashboard))
    return encoded


def scrape_jobs(application: str, *, serving: bool) -> list[dict]:
    """The daemon's metrics endpoint, while this unit runs the daemon; none otherwise.

    A unit that does not serve (no token yet, or a non-leader with filesystem storage)
    has no daemon to scrape: listing it would only raise a daemon-down alert for a unit
    whose status already says why it does not serve.
    """
    if not serving:
        return []
    return [
        {
            "job_name": f"{application}_daemon",
            "metrics_path": METRICS_PATH,
            "scheme": "http",
            "static_configs": [{"targets": [METRICS_ADDR]}],
        }
    ]


def unit_data(topology: Topology, *, serving: bool) -> dict[str, str]:
    """The unit databag for the collector: everything under the one `config` key."""
    data = {
        "metrics_scrape_jobs": scrape_jobs(topology.application, serving=serving),
        "metrics_alert_rules": metrics_alert_rules(topology),
        "log_alert_rules": log_alert_rules(topology),
        "dashboards": dashboards(topology.charm),
        # Snap log slots: the daemon is not a snap; its log is in the journal.
        "log_slots": [],
    }
    return {DATABAG_KEY: json.dumps(data, sort_keys=True)}
