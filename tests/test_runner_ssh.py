"""A real ansible-runner run over SSH against real sshd test hosts."""

from __future__ import annotations

import sys
from pathlib import Path

from controlplane.deploy.runner import PlaybookRequest, run_playbook
from controlplane.fleet.inventory import RenderContext, render_inventory
from tests.conftest import ROOT, ssh_fleet
from tests.sshd import SshLab

PLAYBOOK = ROOT / "tests" / "playbooks" / "write_marker.yml"


def test_playbook_over_ssh_writes_under_each_host_root(ssh_lab: SshLab, tmp_path: Path) -> None:
    fleet = ssh_fleet(ssh_lab, hosts=2)
    inventory = render_inventory(fleet, RenderContext(tmp_path, sys.executable))
    events: list[str] = []

    def on_event(event: dict[str, object]) -> bool:
        events.append(str(event.get("event")))
        return True

    result = run_playbook(
        PlaybookRequest(PLAYBOOK, inventory, extravars={"marker_token": "t-42"}),
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
        marker = host.root / "var/lib/controlplane/marker"
        assert marker.read_text() == f"{host.name} {host.address} t-42\n"
    # The other hosts were not touched: each host sees only its own root.
    for host in ssh_lab.hosts[2:]:
        assert not (host.root / "var").exists()
    assert "playbook_on_stats" in events
    assert events.count("runner_on_ok") == 4


def test_stopped_host_is_reported_unreachable(ssh_lab: SshLab, tmp_path: Path) -> None:
    fleet = ssh_fleet(ssh_lab, hosts=2)
    inventory = render_inventory(fleet, RenderContext(tmp_path, sys.executable))
    ssh_lab.hosts[1].stop()

    result = run_playbook(
        PlaybookRequest(PLAYBOOK, inventory, extravars={"marker_token": "x"}),
        tmp_path / "runner",
        "run-2",
    )

    assert result.status == "failed"
    assert result.stats["host1"].dark == 0
    assert result.stats["host2"].dark == 1
    assert (ssh_lab.hosts[0].root / "var/lib/controlplane/marker").exists()
    assert not (ssh_lab.hosts[1].root / "var").exists()
