"""The rendered inventory is one plain `ansible-inventory` accepts, with what playbooks need."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.cli import run
from controlplane.fleet.inventory import RenderContext, render_inventory
from controlplane.fleet.loader import load_fleet
from tests.conftest import LAB

ANSIBLE_INVENTORY = str(Path(sys.executable).parent / "ansible-inventory")


def ansible_list(path: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [ANSIBLE_INVENTORY, "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": str(Path(sys.executable).parent), "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_lab_inventory_accepted_by_ansible_inventory(tmp_path: Path) -> None:
    fleet = load_fleet(LAB)
    inv = render_inventory(fleet, RenderContext(tmp_path / "var", "/usr/bin/python3"))
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))

    listed = ansible_list(path)

    assert sorted(listed["all"]["children"]) == sorted(
        [
            "ungrouped",
            "member_amsterdam",
            "member_rotterdam",
            "member_den_haag",
            "member_utrecht",
            "app_uitkering",
            "app_reintegratie",
        ]
    )
    assert listed["member_den_haag"]["hosts"] == ["lab-1", "lab-2", "lab-3", "lab-4"]
    assert listed["member_utrecht"]["hosts"] == ["lab-1", "lab-2", "lab-4"]
    hostvars = listed["_meta"]["hostvars"]
    assert set(hostvars) == {"lab-1", "lab-2", "lab-3", "lab-4"}
    lab2 = hostvars["lab-2"]
    assert lab2["ansible_connection"] == "local"
    assert lab2["ansible_python_interpreter"] == "/usr/bin/python3"
    assert lab2["cp_root"] == str((tmp_path / "var" / "hosts" / "lab-2").resolve())
    assert lab2["cp_address"] == "127.0.10.2"
    assert {(i["member"], i["app"], i["port"]) for i in lab2["cp_instances"]} == {
        ("amsterdam", "uitkering", 8101),
        ("rotterdam", "uitkering", 8102),
        ("den-haag", "reintegratie", 8203),
        ("utrecht", "reintegratie", 8204),
    }


def test_ssh_hosts_render_connection_settings(tmp_path: Path) -> None:
    fleet = load_fleet(LAB.parent / "rotterdam")
    inv = render_inventory(fleet, RenderContext(tmp_path, "/venv/python"))
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps(inv))
    host = ansible_list(path)["_meta"]["hostvars"]["rtm-app-01.dc.sociaal-coop.nl"]
    assert host["ansible_connection"] == "ssh"
    assert host["ansible_user"] == "deploy"
    assert host["ansible_become"] is True
    assert host["ansible_python_interpreter"] == "/usr/bin/python3"
    assert host["cp_root"] == "/"


def test_cli_inventory_for_one_member(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["inventory", "utrecht", "--json"]) == 0
    inv = json.loads(capsys.readouterr().out)
    assert sorted(inv["all"]["hosts"]) == ["lab-1", "lab-2", "lab-4"]
    assert list(inv["all"]["children"]) == ["member_utrecht", "app_uitkering", "app_reintegratie"]


def test_cli_inventory_unknown_member(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["inventory", "leiden"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown member 'leiden'"
