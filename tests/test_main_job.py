"""The README's main job: `controlplane provision` through the real CLI on a lab fleet."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from controlplane.app import Context
from controlplane.cli import run as run_cli
from controlplane.costs.history import ReservationHistory
from controlplane.deploy.model import HostOutcome, RunKind, RunStatus
from controlplane.metrics import ControlPlaneCollector, build_registry
from controlplane.settings import load_settings
from controlplane.store.db import make_engine
from tests.conftest import LAB
from tests.refapp_fixtures import kill_refapps

CLI = str(Path(sys.executable).parent / "controlplane")


@dataclass
class Provisioned:
    """The lab fleet on its own loopback addresses and data dir, with utrecht provisioned."""

    fleet: Path
    env: dict[str, str]
    first: dict[str, Any]  # what the provision printed with --json
    output: str  # everything it printed, stdout and stderr


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    """One provision of utrecht for the module: the tests after it only read what it left,
    or put back what they change (each provision costs many seconds)."""
    tmp = tmp_path_factory.mktemp("main-job")
    fleet = tmp / "fleet"
    shutil.copytree(LAB, fleet)
    hosts = fleet / "hosts.yml"
    hosts.write_text(hosts.read_text().replace("127.0.10.", "127.0.50."))
    env = {**os.environ, "CONTROLPLANE_DATA_DIR": str(tmp / "var")}
    try:
        proc = provision(fleet, env, "utrecht")
        yield Provisioned(fleet, env, json.loads(proc.stdout), proc.stdout + proc.stderr)
    finally:
        kill_refapps(tmp / "var" / "hosts")


def provision(fleet: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [CLI, "provision", *args, "--fleet", str(fleet), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_provision_reports_instances_and_rerun_is_a_no_op(provisioned: Provisioned) -> None:
    fleet, env, first = provisioned.fleet, provisioned.env, provisioned.first
    assert first["status"] == "ok"
    assert [(r["app"], r["status"]) for r in first["runs"]] == [
        ("uitkering", "successful"),
        ("reintegratie", "successful"),
    ]
    instances = first["instances"]
    assert {
        (i["app"], i["host"], i["address"], i["port"], i["version"], i["status"]) for i in instances
    } == {
        ("uitkering", "lab-4", "127.0.50.4", 8104, "1.1.0", "healthy"),
        ("uitkering", "lab-1", "127.0.50.1", 8104, "1.1.0", "healthy"),
        ("reintegratie", "lab-2", "127.0.50.2", 8204, "2.1.0", "healthy"),
    }
    # A successful deploy records what the fleet reserves, for the cost ledger.
    db = make_engine(f"sqlite:///{Path(env['CONTROLPLANE_DATA_DIR']) / 'controlplane.db'}")
    assert not ReservationHistory(db).is_empty()
    db.dispose()
    again = json.loads(provision(fleet, env, "utrecht").stdout)
    assert again["runs"] == []  # nothing to do
    assert {i["status"] for i in again["instances"]} == {"healthy"}


def lab_secrets() -> list[str]:
    """Every secret in the lab's vault files, decrypted the way Ansible does."""
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-vault"),
            "view",
            "--vault-password-file",
            str(LAB / "vault-password"),
            str(LAB / "vault" / "utrecht.yml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    doc = yaml.safe_load(proc.stdout)
    return [app["db_password"] for app in doc["cp_secrets"].values()]


def test_no_secret_reaches_records_output_or_artifacts(
    provisioned: Provisioned, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The provision's fresh deploys rendered each app's config with its secret."""
    fleet, env = provisioned.fleet, provisioned.env
    secrets = lab_secrets()
    assert secrets and all(len(s) >= 8 for s in secrets)
    run = provisioned.first["runs"][0]
    assert run["app"] == "uitkering"
    data_dir = Path(env["CONTROLPLANE_DATA_DIR"])
    # `runs show` in this process (what the script exits with is run's code): no new Python.
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(data_dir))
    capsys.readouterr()
    assert run_cli(["runs", "show", run["id"], "--json", "--fleet", str(fleet)]) == 0
    shown = capsys.readouterr()
    assert json.loads(shown.out)[0]["id"] == run["id"]
    seen = provisioned.output + shown.out + shown.err
    # Everything the control plane keeps: the database and every run artifact.
    kept = [*data_dir.glob("controlplane.db*"), *(data_dir / "runs").rglob("*")]
    blobs = [p.read_bytes() for p in kept if p.is_file()]
    assert blobs and (data_dir / "runs" / run["id"]).is_dir()
    for secret in secrets:
        assert secret not in seen
        assert all(secret.encode() not in blob for blob in blobs)
    # The secret did reach the one place it belongs: the app's 0600 config on its hosts.
    configs = list((data_dir / "hosts").rglob("utrecht/uitkering/releases/*/config.json"))
    assert configs and all(c.stat().st_mode & 0o777 == 0o600 for c in configs)
    assert any(secrets[0] in c.read_text() or secrets[-1] in c.read_text() for c in configs)


def test_nightly_drift_job_finds_a_tampered_config_per_member(
    provisioned: Provisioned, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, env = provisioned.fleet, provisioned.env
    data_dir = Path(env["CONTROLPLANE_DATA_DIR"])
    [config] = list(
        (data_dir / "hosts" / "lab-2").rglob("utrecht/reintegratie/current/config.json")
    )
    original = config.read_text()
    config.write_text(original.replace('"port"', '"port" ', 1))  # a hand edit
    before = config.read_text()
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(data_dir))
    ctx = Context(load_settings(fleet=fleet))
    try:
        ctx.maintenance.dispatch("cron", "drift-nightly", {})
    finally:
        after = config.read_text()
        config.write_text(original)  # the module's fleet, as the provision left it

    drift = [r for r in ctx.runs.find() if r.kind is RunKind.DRIFT]
    assert {r.member for r in drift} == {"amsterdam", "rotterdam", "den-haag", "utrecht"}
    assert all(r.status is RunStatus.SUCCESSFUL for r in drift), [r.error for r in drift]
    [utrecht] = [r for r in drift if r.member == "utrecht"]
    outcomes = {h.host: h.outcome for h in ctx.runs.host_results(utrecht.id)}
    assert outcomes["lab-2"] is HostOutcome.CHANGED  # the drift, found
    assert outcomes["lab-1"] is HostOutcome.OK
    assert after == before  # found, not fixed: a drift check changes nothing
    scrape = generate_latest(
        build_registry(ControlPlaneCollector(ctx.fleet, ctx.engine), process_metrics=False)
    ).decode()
    assert 'controlplane_drift_hosts{member="utrecht"} 1.0' in scrape
    ctx.close()
