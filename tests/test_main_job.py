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
    again = provision(fleet, env, "utrecht")
    assert again["runs"] == []  # nothing to do
    assert {i["status"] for i in again["instances"]} == {"healthy"}  # type: ignore[union-attr,index]
