"""The README's main job: `controlplane provision` through the real CLI on a lab fleet."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from controlplane.app import Context
from controlplane.costs.history import ReservationHistory
from controlplane.deploy.model import HostOutcome, RunKind, RunStatus
from controlplane.metrics import ControlPlaneCollector, build_registry
from controlplane.settings import load_settings
from controlplane.store.db import make_engine
from tests.conftest import LAB
from tests.refapp_fixtures import kill_refapps

CLI = str(Path(sys.executable).parent / "controlplane")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """The shipped lab fleet on its own loopback addresses and data dir."""
    fleet = tmp_path / "fleet"
    shutil.copytree(LAB, fleet)
    hosts = fleet / "hosts.yml"
    hosts.write_text(hosts.read_text().replace("127.0.10.", "127.0.50."))
    env = {**os.environ, "CONTROLPLANE_DATA_DIR": str(tmp_path / "var")}
    yield fleet, env
    kill_refapps(tmp_path / "var" / "hosts")


def provision(fleet: Path, env: dict[str, str], *args: str) -> dict[str, object]:
    proc = subprocess.run(
        [CLI, "provision", *args, "--fleet", str(fleet), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_provision_reports_instances_and_rerun_is_a_no_op(lab: tuple[Path, dict[str, str]]) -> None:
    fleet, env = lab
    first = provision(fleet, env, "utrecht")
    assert first["status"] == "ok"
    assert [(r["app"], r["status"]) for r in first["runs"]] == [  # type: ignore[index]
        ("uitkering", "successful"),
        ("reintegratie", "successful"),
    ]
    instances = first["instances"]
    assert {
        (i["app"], i["host"], i["address"], i["port"], i["version"], i["status"])  # type: ignore[index]
        for i in instances
    } == {  # type: ignore[union-attr]
        ("uitkering", "lab-4", "127.0.50.4", 8104, "1.1.0", "healthy"),
        ("uitkering", "lab-1", "127.0.50.1", 8104, "1.1.0", "healthy"),
        ("reintegratie", "lab-2", "127.0.50.2", 8204, "2.1.0", "healthy"),
    }
    # A successful deploy records what the fleet reserves, for the cost ledger.
    db = make_engine(f"sqlite:///{Path(env['CONTROLPLANE_DATA_DIR']) / 'controlplane.db'}")
    assert not ReservationHistory(db).is_empty()
    db.dispose()
    again = provision(fleet, env, "utrecht")
    assert again["runs"] == []  # nothing to do
    assert {i["status"] for i in again["instances"]} == {"healthy"}  # type: ignore[union-attr,index]


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


def test_no_secret_reaches_records_output_or_artifacts(lab: tuple[Path, dict[str, str]]) -> None:
    fleet, env = lab
    # A plain deploy is gated; without the lab's windows this test passes on payment days too.
    (fleet / "windows.yml").unlink()
    (fleet / "maintenance.yml").unlink()
    secrets = lab_secrets()
    assert secrets and all(len(s) >= 8 for s in secrets)
    proc = subprocess.run(
        [CLI, "deploy", "utrecht", "--app", "uitkering", "--fleet", str(fleet), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [run] = json.loads(proc.stdout)
    shown = subprocess.run(
        [CLI, "runs", "show", run["id"], "--json", "--fleet", str(fleet)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    data_dir = Path(env["CONTROLPLANE_DATA_DIR"])
    seen = proc.stdout + proc.stderr + shown.stdout + shown.stderr
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
    lab: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, env = lab
    assert provision(fleet, env, "utrecht")["status"] == "ok"
    data_dir = Path(env["CONTROLPLANE_DATA_DIR"])
    [config] = list(
        (data_dir / "hosts" / "lab-2").rglob("utrecht/reintegratie/current/config.json")
    )
    config.write_text(config.read_text().replace('"port"', '"port" ', 1))  # a hand edit
    before = config.read_text()
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(data_dir))
    ctx = Context(load_settings(fleet=fleet))

    ctx.maintenance.dispatch("cron", "drift-nightly", {})

    drift = [r for r in ctx.runs.find() if r.kind is RunKind.DRIFT]
    assert {r.member for r in drift} == {"amsterdam", "rotterdam", "den-haag", "utrecht"}
    assert all(r.status is RunStatus.SUCCESSFUL for r in drift), [r.error for r in drift]
    [utrecht] = [r for r in drift if r.member == "utrecht"]
    outcomes = {h.host: h.outcome for h in ctx.runs.host_results(utrecht.id)}
    assert outcomes["lab-2"] is HostOutcome.CHANGED  # the drift, found
    assert outcomes["lab-1"] is HostOutcome.OK
    assert config.read_text() == before  # found, not fixed: a drift check changes nothing
    scrape = generate_latest(
        build_registry(ControlPlaneCollector(ctx.fleet, ctx.engine), process_metrics=False)
    ).decode()
    assert 'controlplane_drift_hosts{member="utrecht"} 1.0' in scrape
    ctx.close()
