"""The command line: help, JSON output, settings from env and TOML, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.cli import app, run
from controlplane.settings import load_settings
from tests.conftest import LAB

CLI = str(Path(sys.executable).parent / "controlplane")


def test_help_lists_every_command_with_help(capsys: pytest.CaptureFixture[str]) -> None:
    proc = subprocess.run([CLI, "--help"], capture_output=True, text=True, check=True)
    for info in app.registered_commands:
        name = info.name or info.callback.__name__  # type: ignore[union-attr]
        assert name in proc.stdout
        assert info.callback is not None and info.callback.__doc__, f"{name} has no help"
    for group in app.registered_groups:
        assert group.name in proc.stdout
        assert group.typer_instance is not None
        assert group.typer_instance.info.help, f"{group.name} has no help"


def test_usage_error_exits_2() -> None:
    proc = subprocess.run([CLI, "no-such-command"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    proc = subprocess.run([CLI, "validate", "--bogus"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2


def test_fleet_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["fleet", "show", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["member"] for m in data["members"]] == [
        "amsterdam",
        "rotterdam",
        "den-haag",
        "utrecht",
    ]
    assert len(data["hosts"]) == 4
    lab2 = next(h for h in data["hosts"] if h["host"] == "lab-2")
    # amsterdam + rotterdam uitkering (1 + 2 vCPU) and two reintegratie replicas (0.5 each)
    assert float(lab2["reserved"]["vcpu"]) == 4.0
    first = data["instances"][0]
    assert set(first) == {"member", "app", "version", "host", "address", "port"}


def test_env_and_toml_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "cp.toml"
    toml.write_text(f'data_dir = "{tmp_path / "from-toml"}"\ntimezone = "Europe/Brussels"\n')
    monkeypatch.setenv("CONTROLPLANE_CONFIG", str(toml))
    settings = load_settings()
    assert settings.timezone == "Europe/Brussels"
    assert settings.resolved_data_dir == tmp_path / "from-toml"
    assert (
        settings.resolved_database_url == f"sqlite:///{tmp_path / 'from-toml' / 'controlplane.db'}"
    )
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "from-env"))
    assert load_settings().resolved_data_dir == tmp_path / "from-env"  # env beats the file


def test_bad_setting_is_one_line_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTROLPLANE_TIMEZONE", "Europe/Atlantis")
    proc = subprocess.run([CLI, "config"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: setting timezone: unknown time zone 'Europe/Atlantis'"


def test_db_status_migrates_a_fresh_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path))
    proc = subprocess.run(
        [CLI, "db", "status", "--json"], capture_output=True, text=True, check=True
    )
    data = json.loads(proc.stdout)
    assert data["status"] == "ok"
    assert data["revision"]
    assert (tmp_path / "controlplane.db").exists()


def test_unreachable_database_exits_4(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTROLPLANE_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    proc = subprocess.run([CLI, "db", "status"], capture_output=True, text=True, check=False)
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.startswith("error: database")
    assert proc.stderr.count("\n") == 1


def test_deploy_refused_by_a_freeze_exits_3_and_queues_nothing(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(LAB, fleet)
    (fleet / "windows.yml").write_text(
        "windows:\n"
        "  - name: always-frozen\n"
        "    kind: freeze\n"
        "    scope: {member: utrecht}\n"
        "    rrule: FREQ=DAILY\n"
        "    start: 2020-01-01T00:00\n"
        "    duration: P1D\n"
    )
    env = {**os.environ, "CONTROLPLANE_DATA_DIR": str(tmp_path / "var")}
    proc = subprocess.run(
        [CLI, "deploy", "utrecht", "--app", "uitkering", "--fleet", str(fleet)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "always-frozen" in proc.stderr
    listed = subprocess.run(
        [CLI, "runs", "list", "--json", "--fleet", str(fleet)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(listed.stdout) == []
