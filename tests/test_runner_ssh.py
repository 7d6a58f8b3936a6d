"""A real ansible-runner run over SSH against real sshd test hosts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from controlplane.deploy.runner import PlaybookRequest, run_playbook
from controlplane.errors import InvalidInput
from controlplane.fleet.inventory import RenderContext, render_inventory
from controlplane.settings import PLAYBOOKS_DIR
from tests.conftest import ROOT, ssh_fleet
from tests.sshd import SshLab

PATCH = PLAYBOOKS_DIR / "patch.yml"
RECORD = "var/lib/controlplane/patch-level.json"

pytestmark = pytest.mark.sshd


def test_playbook_over_ssh_writes_under_each_host_root(ssh_lab: SshLab, tmp_path: Path) -> None:
    fleet = ssh_fleet(ssh_lab, hosts=2)
    inventory = render_inventory(fleet, RenderContext(tmp_path, sys.executable))
    events: list[str] = []

    def on_event(event: dict[str, object]) -> bool:
        events.append(str(event.get("event")))
        return True

    result = run_playbook(
        PlaybookRequest(
            PATCH, inventory, extravars={"cp_patch_level": "t-42"}, limit="host1,host2"
        ),
        tmp_path / "runner",
        "run-1",
        event_handler=on_event,
    )

    assert result.status == "successful", result
    assert result.rc == 0
    assert set(result.stats) == {"host1", "host2"}
    for name, stats in result.stats.items():
        assert stats.failures == 0 and stats.dark == 0
        assert stats.changed == 2, f"{name}: {stats}"
    for host in ssh_lab.hosts[:2]:
        record = json.loads((host.root / RECORD).read_text())
        assert (record["level"], record["mode"]) == ("t-42", "simulate")
    # The other hosts were not touched: each host sees only its own root.
    for host in ssh_lab.hosts[2:]:
        assert not (host.root / "var").exists()
    assert "playbook_on_stats" in events


def test_stopped_host_is_reported_unreachable(ssh_lab: SshLab, tmp_path: Path) -> None:
    fleet = ssh_fleet(ssh_lab, hosts=2)
    inventory = render_inventory(fleet, RenderContext(tmp_path, sys.executable))
    ssh_lab.hosts[1].stop()

    result = run_playbook(
        PlaybookRequest(PATCH, inventory, extravars={"cp_patch_level": "x"}, limit="host1,host2"),
        tmp_path / "runner",
        "run-2",
    )

    assert result.status == "failed"
    assert result.stats["host1"].dark == 0
    assert result.stats["host2"].dark == 1
    assert (ssh_lab.hosts[0].root / RECORD).exists()
    assert not (ssh_lab.hosts[1].root / "var").exists()


def test_playbook_outside_the_package_is_refused_before_anything_runs(
    ssh_lab: SshLab, tmp_path: Path
) -> None:
    fleet = ssh_fleet(ssh_lab, hosts=1)
    inventory = render_inventory(fleet, RenderContext(tmp_path, sys.executable))
    outside = ROOT / "tests" / "playbooks" / "write_marker.yml"

    with pytest.raises(InvalidInput, match=r"^playbook: 'write_marker.yml' is not one of"):
        run_playbook(
            PlaybookRequest(outside, inventory, {"marker_token": "x"}, limit="host1"),
            tmp_path / "runner",
            "run-3",
        )

    assert not (tmp_path / "runner").exists()
    assert not (ssh_lab.hosts[0].root / "var").exists()
