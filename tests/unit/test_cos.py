"""The cos-agent relation: what the collector gets, and that the rules and dashboard hold.

The relation data is read back the way the collector reads it: the JSON under `config`,
dashboards decoded with the observability libraries' own `cosl.LZMABase64`, rules passed
through `cosl`'s `AlertRules` as the collector forwards them.

The dashboard and the alert rules are checked against the daemon's metrics as
`daemon_metrics.txt` lists them (the metrics contract): every expression must parse
(`promql-parser`, Prometheus's grammar and functions) and read only those metrics.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import cosl
import promql_parser
import pytest
import yaml
from cosl.rules import AlertRules
from ops import testing

import cos
from conftest import TOKEN, deployed

ROOT = Path(__file__).resolve().parents[2]
CHARM = ROOT / "charm"
S3_SECRETS = """\
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
SECRETS = [TOKEN, "AKIAEXAMPLE", "wJalrXUtnFEMI", "PRIVATE KEY", "MIIBOgIBAAJBAKj34GkxFhD90"]


def collector(relation_id=None):
    kwargs = {"id": relation_id} if relation_id is not None else {}
    # Juju makes it a subordinate (container-scoped) relation from the collector's side;
    # this side declares a plain endpoint, as the interface asks.
    return testing.Relation(
        endpoint="cos-agent",
        interface="cos_agent",
        remote_app_name="opentelemetry-collector",
        remote_units_data={0: {}},
        **kwargs,
    )


def related(ctx, state, relation) -> testing.State:
    state = dataclasses.replace(state, relations=[*state.relations, relation])
    return ctx.run(ctx.on.relation_joined(relation), state)


def shared(state: testing.State, relation) -> dict:
    """What the unit put in the relation, decoded as the collector decodes it."""
    data = state.get_relation(relation.id).local_unit_data
    return json.loads(data[cos.DATABAG_KEY])


# -- the relation data -----------------------------------------------------------------


def test_the_collector_gets_the_scrape_job_dashboard_and_rules(ctx, fake):
    relation = collector()
    state = related(ctx, deployed(ctx, fake), relation)
    data = shared(state, relation)

    assert data["metrics_scrape_jobs"] == [
        {
            "job_name": "aar_daemon",
            "metrics_path": "/metrics",
            "scheme": "http",
            "static_configs": [{"targets": ["127.0.0.1:3001"]}],
        }
    ]
    assert data["log_slots"] == []

    (encoded,) = data["dashboards"]
    dashboard = json.loads(cosl.LZMABase64.decompress(encoded))
    assert dashboard["title"] == "Anbox Application Registry"
    assert "charm: aar" in dashboard["tags"]

    topology = cosl.JujuTopology(
        model=state.model.name,
        model_uuid=state.model.uuid,
        application="aar",
        unit="aar/0",
        charm_name="aar",
    )
    groups = data["metrics_alert_rules"]["groups"]
    assert [g["name"] for g in groups] == [f"{topology.identifier}_aar_rules".replace("-", "_")]
    alerts = {rule["alert"]: rule for rule in groups[0]["rules"]}
    assert {
        "AarDaemonDown",
        "AarMetricsAbsent",
        "AarHighServerErrorRate",
        "AarStorageDown",
        "AarStorageUnavailable",
        "AarServerCertificateExpiringSoon",
        "AarFilesystemNearlyFull",
    } <= set(alerts)
    for rule in alerts.values():
        # Scoped to this application: the placeholder became its matchers everywhere.
        assert cos.TOPOLOGY not in rule["expr"]
        assert rule["labels"].items() >= topology.label_matcher_dict.items()
    assert alerts["AarDaemonDown"]["expr"] == (
        f'up{{juju_model="{state.model.name}",juju_model_uuid="{state.model.uuid}",'
        'juju_application="aar"} == 0'
    )

    (log_group,) = data["log_alert_rules"]["groups"]
    assert {rule["alert"] for rule in log_group["rules"]} >= {"AarStorageFailureLogged"}


def test_the_collector_forwards_the_rules_with_the_topology_they_need(ctx, fake):
    """As the collector does: its own `AlertRules` over what the relation carries.

    Metrics rules keep aar's topology (the series are scraped under it); log rules take the
    collector's (the journal is shipped under it), and neither group is renamed.
    """
    relation = collector()
    data = shared(related(ctx, deployed(ctx, fake), relation), relation)
    own = cosl.JujuTopology(
        model="registry",
        model_uuid="00000000-0000-4000-8000-000000000000",
        application="opentelemetry-collector",
        unit="opentelemetry-collector/0",
        charm_name="opentelemetry-collector",
    )
    for query_type, key, application in (
        ("promql", "metrics_alert_rules", "aar"),
        ("logql", "log_alert_rules", "opentelemetry-collector"),
    ):
        rules = AlertRules(query_type=query_type, topology=own)
        rules.add(data[key])
        forwarded = rules.as_dict()["groups"]
        assert [g["name"] for g in forwarded] == [g["name"] for g in data[key]["groups"]]
        for group in forwarded:
            for rule in group["rules"]:
                assert rule["labels"]["juju_application"] == application, rule["alert"]


def test_a_unit_that_does_not_serve_shares_no_scrape_job_until_it_does(ctx, fake):
    relation = collector()
    state = testing.State(leader=True, relations=[relation])
    for event in (ctx.on.install(), ctx.on.config_changed(), ctx.on.start()):
        state = ctx.run(event, state)
    state = ctx.run(ctx.on.relation_joined(state.get_relation(relation.id)), state)
    data = shared(state, relation)
    assert data["metrics_scrape_jobs"] == []
    assert data["dashboards"] and data["metrics_alert_rules"]["groups"]

    state = ctx.run(
        ctx.on.config_changed(), dataclasses.replace(state, config={"ua_token": TOKEN})
    )
    assert shared(state, relation)["metrics_scrape_jobs"][0]["job_name"] == "aar_daemon"


def test_a_non_leader_with_filesystem_storage_is_not_scraped(ctx, fake):
    relation = collector()
    state = testing.State(leader=False, config={"ua_token": TOKEN}, relations=[relation])
    for event in (ctx.on.install(), ctx.on.config_changed(), ctx.on.start()):
        state = ctx.run(event, state)
    assert isinstance(state.unit_status, testing.BlockedStatus)
    assert shared(state, relation)["metrics_scrape_jobs"] == []


def test_nothing_secret_reaches_the_collector(ctx, fake):
    relation = collector()
    state = related(ctx, deployed(ctx, fake, storage_config=S3_SECRETS), relation)
    assert "wJalrXUtnFEMI" in fake.current_config(), "the secrets are in the config file"
    local = state.get_relation(relation.id).local_unit_data
    # Only the interface's key besides what Juju itself puts there (addresses).
    assert set(local) - {"egress-subnets", "ingress-address", "private-address"} == {"config"}
    everything = json.dumps(dict(local))
    data = shared(state, relation)
    decoded = everything + "".join(cosl.LZMABase64.decompress(d) for d in data["dashboards"])
    for secret in SECRETS:
        assert secret not in decoded
    # Not the AMS relations' data either: no certificate, fingerprint or address of the API.
    assert "BEGIN CERTIFICATE" not in decoded and "fingerprint" not in local


def test_the_ams_relations_get_nothing_of_the_collectors_data(ctx, fake, ams):
    from conftest import client_relation

    relation = collector()
    client = client_relation(ams["ams-east/0"])
    state = related(ctx, deployed(ctx, fake), relation)
    state = ctx.run(
        ctx.on.relation_changed(client, remote_unit=0),
        dataclasses.replace(state, relations=[*state.relations, client]),
    )
    assert cos.DATABAG_KEY not in state.get_relation(client.id).local_unit_data
    assert "certificate" not in state.get_relation(relation.id).local_unit_data


def test_metadata_declares_one_collector_per_unit():
    metadata = yaml.safe_load((ROOT / "metadata.yaml").read_text())
    assert metadata["provides"]["cos-agent"] == {"interface": "cos_agent", "limit": 1}


# -- the rule files and the dashboard ---------------------------------------------------


def contract() -> set[str]:
    """Every series name the daemon exports, histograms' series included."""
    names = set()
    for line in (Path(__file__).parent / "daemon_metrics.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, kind = line.split()
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


# Prometheus's own series for a scrape target, beside the daemon's.
SCRAPE_SERIES = {"up"}
SAMPLE = cos.Topology("registry", "00000000-0000-4000-8000-000000000000", "aar", "aar")


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    """The vector selectors of a PromQL expression; it must parse (Prometheus's grammar)."""
    found = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    assert found, f"reads no series: {expr}"
    return found


def matchers(selector: promql_parser.VectorSelector) -> dict[str, tuple[str, str]]:
    return {m.name: (str(m.op), m.value) for m in selector.matchers.matchers}


def rule_files(kind: str) -> list[Path]:
    files = sorted((CHARM / kind).iterdir())
    assert files, f"charm/{kind} has no rule file"
    return files


@pytest.mark.parametrize("path", rule_files("prometheus_alert_rules"), ids=lambda p: p.name)
def test_prometheus_rules_read_only_the_daemons_metrics(path):
    known = contract() | SCRAPE_SERIES
    scoped = {
        key: (str(promql_parser.MatchOp.Equal), value)
        for key, value in SAMPLE.labels.items()
        if key != "juju_charm"
    }
    for group in cos.read_rule_groups(path):
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["alert"] and rule["labels"]["severity"] in {"critical", "warning"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            if "for" in rule:
                promql_parser.parse_duration(rule["for"])
            # As the charm hands it over: every selector scoped to the application.
            for selector in selectors(rule["expr"].replace(cos.TOPOLOGY, SAMPLE.matchers)):
                assert selector.name in known, f"{rule['alert']}: {selector.name}"
                assert matchers(selector).items() >= scoped.items(), rule["alert"]


def test_the_alerts_the_issue_asks_for_are_there():
    rules = {
        rule["alert"]: rule["expr"]
        for path in rule_files("prometheus_alert_rules")
        for group in cos.read_rule_groups(path)
        for rule in group["rules"]
    }
    assert "up{%%juju_topology%%} == 0" in rules["AarDaemonDown"]
    assert "absent(up{%%juju_topology%%})" in rules["AarMetricsAbsent"]
    assert 'status=~"5.."' in rules["AarHighServerErrorRate"]
    assert "aar_storage_up{%%juju_topology%%} == 0" in rules["AarStorageDown"]
    assert 'kind="unavailable"' in rules["AarStorageUnavailable"]
    assert "< 30 * 86400" in rules["AarServerCertificateExpiringSoon"]
    assert "< 0.10" in rules["AarFilesystemNearlyFull"]
    assert "aar_trust_store_checked_timestamp_seconds" in rules["AarTrustStoreUnread"]


def daemon_source() -> str:
    return "".join(p.read_text() for p in (ROOT / "daemon" / "src").rglob("*.rs"))


@pytest.mark.parametrize("path", rule_files("loki_alert_rules"), ids=lambda p: p.name)
def test_loki_rules_match_lines_the_daemon_logs(path):
    source = daemon_source()
    for group in cos.read_rule_groups(path):
        for rule in group["rules"]:
            expr = rule["expr"]
            assert expr.count("{%%juju_topology%%}") == 1, expr
            # LogQL's metric queries share PromQL's outer grammar: with the log stream
            # replaced by a series, the rest must parse as PromQL does.
            as_promql = re.sub(r"\{%%juju_topology%%\} \|~ `[^`]*` ", "log_lines", expr)
            assert [s.name for s in selectors(as_promql)] == ["log_lines"], expr
            (pattern,) = re.findall(r"\|~ `([^`]*)`", expr)
            message = pattern.rpartition(": ")[2]
            # The message is one the daemon logs at error level, in tracing's format.
            assert re.search(r'tracing::error!\([^;]*"' + re.escape(message), source), message
            line = f"2026-12-05T03:50:00.123456Z ERROR aar::api::response: {message} error=x"
            assert re.search(pattern, line), (pattern, line)
            assert not re.search(pattern, line.replace("ERROR", " WARN")), pattern


def dashboard() -> dict:
    return json.loads((CHARM / "grafana_dashboards" / "aar.json").read_text())


def test_the_dashboard_reads_only_the_daemons_metrics():
    known = contract() | SCRAPE_SERIES
    variables = {
        key: (str(promql_parser.MatchOp.Re), f"${key}")
        for key in ("juju_model", "juju_model_uuid", "juju_application", "juju_unit")
    }
    read = set()
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"] == "${prometheusds}", panel["title"]
            expr = target["expr"].replace("$__rate_interval", "5m")
            for selector in selectors(expr):
                assert selector.name in known, f"{panel['title']}: {selector.name}"
                # Every selector follows the dashboard's topology variables.
                assert matchers(selector).items() >= variables.items(), panel["title"]
                read.add(selector.name)
    # What the issue asks the dashboard to show.
    assert {
        "aar_http_requests_total",
        "aar_http_request_duration_seconds_bucket",
        "aar_http_response_bytes_total",
        "aar_http_request_bytes_total",
        "aar_uploads_in_progress",
        "aar_storage_errors_total",
        "aar_refused_requests_total",
        "aar_index_versions",
        "aar_index_blob_bytes",
        "aar_server_certificate_expiry_timestamp_seconds",
    } <= read


def test_the_dashboard_is_one_grafana_imports():
    board = dashboard()
    assert board["uid"] and len(board["uid"]) <= 40
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"prometheusds", "juju_model", "juju_application", "juju_unit"} <= variables
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("groups: [", "not YAML"),
        ("alert: X\nexpr: up == 0\n", "expected `groups:`"),
        ("groups:\n  - name: g\n", "every group needs a name and rules"),
        (
            "groups:\n  - name: g\n    rules: [{alert: X}]\n",
            "every rule needs an alert and an expr",
        ),
    ],
)
def test_a_broken_rule_file_is_named_with_its_problem(tmp_path, text, problem):
    path = tmp_path / "broken.rules"
    path.write_text(text)
    with pytest.raises(cos.RuleFileError, match=problem) as refused:
        cos.read_rule_groups(path)
    assert str(refused.value).startswith("broken.rules: ")


def test_a_broken_rule_file_leaves_the_registry_serving(ctx, fake, monkeypatch, tmp_path):
    (tmp_path / "aar.rules").write_text("groups: [")
    monkeypatch.setattr(cos, "METRICS_RULES", tmp_path)
    relation = collector()
    state = related(ctx, deployed(ctx, fake), relation)
    assert state.unit_status.name == "active"
    assert cos.DATABAG_KEY not in state.get_relation(relation.id).local_unit_data
    assert any("cannot share the charm's dashboards and rules" in m.message for m in ctx.juju_log)
