"""A plain (non-editable) `pip install .` carries everything a run needs: the playbooks,
the report templates, the migrations and the shipped fleets. Installed into a fresh venv and
run from a directory that holds no checkout, it provisions a lab member and writes a report.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.refapp_fixtures import kill_refapps


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    venv = tmp_path / "venv"
    # The fresh venv gets no pip of its own (seeding one costs seconds): the project venv's
    # pip installs into it, the way its own pip would.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = subprocess.run(
        # --no-compile: byte-compiling every dependency (ansible-core is large) was half of
        # the install's time, and Python compiles what a run imports on its own.
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-compile",
            "--disable-pip-version-check",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data = tmp_path / "var"
    # Only the fresh venv: nothing from the checkout or the project's own venv may leak in.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONTROLPLANE_", "PYTHON", "VIRTUAL_ENV"))
    }
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "CONTROLPLANE_DATA_DIR": str(data),
    }
    yield venv, elsewhere, env
    kill_refapps(data / "hosts")


def test_a_plain_install_provisions_the_lab_from_anywhere(
    installed: tuple[Path, Path, dict[str, str]],
) -> None:
    venv, elsewhere, env = installed
    cli = str(venv / "bin" / "controlplane")

    # The default fleet is the lab shipped inside the package that runs: the installed one.
    valid = subprocess.run(
        [cli, "validate", "--json"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert valid.returncode == 0, valid.stderr
    default_fleet = Path(json.loads(valid.stdout)["fleet"])
    installed_package = default_fleet.parent.parent
    assert default_fleet == installed_package / "inventories" / "lab"
    assert installed_package.name == "controlplane"
    assert installed_package.is_relative_to(venv), "the installed package must be the one that runs"

    # Provision a copy of that shipped lab on loopback addresses of its own, so lab apps a
    # developer left running (scripts/lab.sh) cannot take its ports.
    fleet = elsewhere / "lab"
    shutil.copytree(installed_package / "inventories" / "lab", fleet)
    hosts = fleet / "hosts.yml"
    hosts.write_text(hosts.read_text().replace("127.0.10.", "127.0.60."))
    proc = subprocess.run(
        # utrecht: the lab member with the fewest instances (three).
        [cli, "provision", "utrecht", "--fleet", str(fleet), "--json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["status"] == "ok"
    assert {(r["app"], r["status"]) for r in result["runs"]} == {
        ("uitkering", "successful"),
        ("reintegratie", "successful"),
    }
    assert result["instances"] and all(i["status"] == "healthy" for i in result["instances"])

    # With the default fleet again: the report template and cost data come from the package.
    report = elsewhere / "board.html"
    proc = subprocess.run(
        [cli, "costs", "report", "--period", "2026-10", "--format", "html", "-o", str(report)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "amsterdam" in report.read_text().lower()
