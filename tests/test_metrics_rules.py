"""The monitoring files in docs/prometheus: promtool checks the scrape config and the rules
and runs the rule unit tests; the rules and the Grafana dashboard only use series that the
real /metrics output (or a recording rule) provides."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from controlplane.fleet.loader import load_fleet
from controlplane.metrics import ControlPlaneCollector, build_registry, exposition
from tests.conftest import LAB, ROOT, missing
from tests.test_metrics_collector import NOW, SetClock, populate

DOCS = ROOT / "docs" / "prometheus"
RULES = DOCS / "rules" / "controlplane.rules.yml"
DASHBOARD = DOCS / "grafana" / "controlplane-dashboard.json"
SERIES = re.compile(r"\b((?:controlplane|process)_[a-z_]+|[a-z_]+:[a-z_]+:[a-z0-9_]+)\b")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        missing("promtool is not installed; scripts/setup.sh installs Debian's prometheus")
    assert binary is not None
    return subprocess.run(
        [binary, *args], cwd=DOCS, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_runs_the_rule_unit_tests() -> None:
    proc = promtool("test", "rules", "tests/controlplane.rules.test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_accepts_the_scrape_config_and_rules() -> None:
    # Syntax only: the bearer token file the config names exists on a Prometheus server,
    # not here.
    proc = promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = promtool("check", "rules", "rules/controlplane.rules.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_burn_rate_window_of_the_reference_table_is_alerted_on() -> None:
    doc = yaml.safe_load(RULES.read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    recorded = {r["record"] for r in rules if "record" in r}
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert f"member:controlplane_sla_probe_errors:ratio_rate{window}" in recorded
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    fast, slow = (
        alerts["ControlPlaneSLAErrorBudgetBurnFast"],
        alerts["ControlPlaneSLAErrorBudgetBurnSlow"],
    )
    assert fast["labels"]["severity"] == "page" and slow["labels"]["severity"] == "ticket"
    for expr, pairs in (
        (fast["expr"], [("14.4", "1h", "5m"), ("6", "6h", "30m")]),
        (slow["expr"], [("3", "1d", "2h"), ("", "3d", "6h")]),
    ):
        for factor, long, short in pairs:
            assert f"ratio_rate{long}\n" in expr and f"ratio_rate{short}\n" in expr
            assert (
                f"({factor} * " in expr if factor else "(member:controlplane_error_budget" in expr
            )
    for name in ("ControlPlaneRepeatedDeployFailures", "ControlPlaneInstanceDown"):
        assert name in alerts


def real_series(engine: Engine) -> set[str]:
    """Sample names of a real scrape of a store with every family populated."""
    lab = load_fleet(LAB)
    populate(engine, lab)
    collector = ControlPlaneCollector(lab, engine, clock=SetClock(NOW))
    text = exposition(build_registry(collector)).decode()
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    # Window metrics depend on the calendar; the lab's calendar has them, none is empty here.
    names |= {
        "controlplane_maintenance_window_active",
        "controlplane_maintenance_window_next_start_timestamp_seconds",
    }
    return names


def test_rules_and_dashboard_use_only_real_series(engine: Engine) -> None:
    names = real_series(engine)
    doc = yaml.safe_load(RULES.read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    recorded = {r["record"] for r in rules if "record" in r}
    exprs = [r["expr"] for r in rules]

    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    for p in panels:
        assert p["targets"], p["title"]
        exprs += [t["expr"] for t in p["targets"]]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))

    used = {m for e in exprs for m in SERIES.findall(e)}
    unknown = used - names - recorded
    assert not unknown, f"series used but never exposed or recorded: {sorted(unknown)}"
    # And the dashboard covers every member metric family the issue asks for.
    dash_text = DASHBOARD.read_text()
    for family in (
        "controlplane_sla_availability_ratio",
        "controlplane_availability_ratio",
        "member_app:controlplane_error_budget_remaining:ratio30d",
        "controlplane_probe_success",
        "controlplane_runs_total",
        "controlplane_run_duration_seconds_bucket",
        "controlplane_runs_active",
        "controlplane_locks_held",
        "controlplane_maintenance_window_active",
        "controlplane_maintenance_window_next_start_timestamp_seconds",
        "controlplane_host_capacity_vcpus",
        "controlplane_host_reserved_vcpus",
        "controlplane_drift_hosts",
    ):
        assert family in dash_text, family


def test_scrape_config_points_at_the_rules() -> None:
    config = yaml.safe_load((DOCS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules/controlplane.rules.yml"]
    [job] = config["scrape_configs"]
    assert job["job_name"] == "controlplane" and job["metrics_path"] == "/metrics"
    assert job["authorization"]["credentials_file"]  # /metrics wants a metrics token
    assert Path(DOCS / config["rule_files"][0]).exists()
