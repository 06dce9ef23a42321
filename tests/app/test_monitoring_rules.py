"""The alert rules and the monitoring configuration, checked by Prometheus' own tools.

promtool and amtool come from Debian's prometheus and prometheus-alertmanager packages
(scripts/bootstrap.sh installs them). The role checks the same files again on the host
(`validate:`) before installing them; tests/infra/monitoring sees the alerts fire.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
ROLE_TEMPLATES = REPO / "roles" / "monitoring" / "templates"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, (
        f"{name} is missing: run scripts/bootstrap.sh (apt: prometheus, prometheus-alertmanager)"
    )
    return path


def run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def render(template: Path, **variables: object) -> str:
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return environment.from_string(template.read_text()).render(ansible_managed="test", **variables)


def test_rules_are_valid():
    rule_files = sorted((MONITORING / "rules").glob("*.yml"))
    assert rule_files
    output = run(tool("promtool"), "check", "rules", *map(str, rule_files))
    assert "SUCCESS" in output


def test_rules_behave_as_their_unit_tests_say():
    """monitoring/tests/: site down for 2 minutes, backups older than 26 h, ..."""
    tests = sorted((MONITORING / "tests").glob("*_test.yml"))
    assert tests
    run(tool("promtool"), "test", "rules", *map(str, tests))


def test_every_alert_has_a_unit_test():
    rules = yaml.safe_load((MONITORING / "rules" / "knowledgetree.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tested = {
        case["alertname"]
        for path in (MONITORING / "tests").glob("*_test.yml")
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    untested = alerts - tested
    assert not untested, f"alerts without a promtool test: {sorted(untested)}"


@pytest.mark.parametrize(
    "receivers",
    [
        {"monitoring_alert_email_to": ["owner@example.org"]},
        {"monitoring_alert_webhook_urls": ["http://127.0.0.1:9099/alerts"]},
        {
            "monitoring_alert_email_to": ["a@example.org", "b@example.org"],
            "monitoring_smtp_username": "mailer",
            "monitoring_alert_webhook_urls": ["https://hooks.example.org/x"],
        },
    ],
)
def test_alertmanager_config_is_valid(tmp_path, receivers):
    variables = {
        "monitoring_alert_email_to": [],
        "monitoring_alert_email_from": "alerts@example.org",
        "monitoring_smtp_smarthost": "smtp.example.org:587",
        "monitoring_smtp_username": "",
        "monitoring_smtp_password": "secret",
        "monitoring_alert_webhook_urls": [],
        "monitoring_alert_repeat_interval": "4h",
        "monitoring_alert_group_wait": "30s",
        **receivers,
    }
    config = tmp_path / "alertmanager.yml"
    config.write_text(render(MONITORING / "alertmanager.yml.j2", **variables))
    run(tool("amtool"), "check-config", str(config))
    receiver = yaml.safe_load(config.read_text())["receivers"][0]
    assert len(receiver.get("email_configs", [])) == len(variables["monitoring_alert_email_to"])
    assert len(receiver.get("webhook_configs", [])) == len(
        variables["monitoring_alert_webhook_urls"]
    )


def test_prometheus_config_is_valid(tmp_path):
    config = tmp_path / "prometheus.yml"
    config.write_text(
        render(
            ROLE_TEMPLATES / "prometheus.yml.j2",
            monitoring_scrape_interval="30s",
            monitoring_evaluation_interval="30s",
            monitoring_alertmanager_listen="127.0.0.1:9093",
            monitoring_prometheus_listen="127.0.0.1:9090",
            monitoring_node_exporter_listen="127.0.0.1:9100",
            monitoring_blackbox_listen="127.0.0.1:9115",
            monitoring_app_ports=[8001, 8002],
            monitoring_probe_urls=["https://kt.example.org/"],
            monitoring_probe_module="https_2xx",
            monitoring_postgres_address="127.0.0.1:5432",
        )
    )
    run(tool("promtool"), "check", "config", "--syntax-only", str(config))
    jobs = {job["job_name"] for job in yaml.safe_load(config.read_text())["scrape_configs"]}
    # The job names the alert rules read.
    assert jobs == {"prometheus", "node", "knowledgetree", "site", "postgres"}


def test_rules_and_dashboard_only_read_metrics_that_exist():
    """Every knowledgetree_* series the alerts and the dashboard read is exported by the
    app (default registry) or written by a role's script as a textfile metric (restic's
    backup and check, pgBackRest's base backups)."""
    import re

    from prometheus_client import REGISTRY

    import app.core.metrics
    import app.services.embeddings  # noqa: F401 - the query embedding histogram

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    exported = {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, [""])
    }
    # The scripts write `${prefix}_suffix{...}` lines (prefix=knowledgetree_...) or literal names.
    written: set[str] = set()
    for script in (MONITORING.parent / "roles").glob("*/templates/*.sh.j2"):
        text = script.read_text()
        prefixes = re.findall(r"\b(?:metric_prefix|prefix)=(knowledgetree_[a-z_]+)", text)
        endings = re.findall(r"\$\{(?:metric_prefix|prefix)\}(_[a-z_]+)", text)
        written |= {prefix + ending for prefix in prefixes for ending in endings}
        written |= set(re.findall(r"echo \"(knowledgetree_[a-z_]+)\{", text))
    texts = [path.read_text() for path in (MONITORING / "rules").glob("*.yml")]
    texts.append((MONITORING / "grafana" / "knowledgetree.json").read_text())
    # Not a file name (knowledgetree_backup.prom) and not the bare prefix in prose.
    pattern = r"knowledgetree_[a-z_]+\b(?!\.prom)"
    read = {name for text in texts for name in re.findall(pattern, text)} - {"knowledgetree_"}
    missing = {name for name in read - written - exported if not name.startswith("knowledgetree@")}
    assert not missing, f"read but never exported: {sorted(missing)}"
