"""The boundary to Ansible with real runs: host keys are checked for every strategy, and
data that reaches Ansible is never templated on the controller.

Real runs cost seconds each, so these are few; the rules behind them are unit-tested in
test_ansible_boundary.py. The host-key runs deploy the genuine host in full, and so are
also the suite's deploys over SSH with the stock (linear) strategy and with mitogen's.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret  # type: ignore[import-untyped]
from sqlalchemy import Engine as SqlEngine

from controlplane.deploy.engine import Engine, EngineConfig
from controlplane.deploy.events import HOST_KEY_MISMATCH
from controlplane.deploy.model import HostOutcome, RunStatus
from controlplane.deploy.plan import DeployRequest, Planner
from controlplane.deploy.runner import PlaybookRequest, ansible_bin_dir, run_playbook, write_inputs
from controlplane.fleet.inventory import RenderContext, render_inventory
from controlplane.fleet.loader import load_fleet
from controlplane.settings import PLAYBOOKS_DIR
from controlplane.store.runs import RunStore
from tests.conftest import LAB, ROOT, ssh_fleet
from tests.refapp_fixtures import FAST, http_get, kill_refapps, tree_text
from tests.sshd import SshLab


@pytest.fixture
def impostor(ssh_lab: SshLab) -> Iterator[SshLab]:
    """host2 answers with a host key that known_hosts does not hold."""
    ssh_lab.hosts[1].pose_as_impostor()
    try:
        yield ssh_lab
    finally:
        ssh_lab.hosts[1].restore_host_key()
        kill_refapps(*[h.root for h in ssh_lab.hosts])


@pytest.mark.sshd
@pytest.mark.parametrize("strategy", ["linear", "mitogen_linear"])
def test_a_host_with_another_key_gets_nothing_and_the_run_says_why(
    impostor: SshLab, sql: SqlEngine, tmp_path: Path, strategy: str
) -> None:
    fleet = ssh_fleet(impostor, hosts=2)
    store = RunStore(sql)
    engine = Engine(
        fleet,
        store,
        EngineConfig(
            data_dir=tmp_path / "var",
            playbooks_dir=PLAYBOOKS_DIR,
            fleet_dir=LAB,
            vault_password_file=LAB / "vault-password",
            health_timeout_seconds=5,
            strategy=strategy,
        ),
        RenderContext(tmp_path / "var", sys.executable),
    )
    [spec] = Planner(fleet, store).plan_deploy(
        DeployRequest("amsterdam", "uitkering", started_by="test")
    )

    run = engine.execute(engine.submit(spec).id)

    assert run.status is RunStatus.FAILED
    assert f"host2: unreachable: {HOST_KEY_MISMATCH}" in (run.error or ""), run.error
    results = {h.host: h for h in store.host_results(run.id)}
    assert results["host2"].outcome is HostOutcome.UNREACHABLE
    # The genuine host was reached with the same settings, so the refusal is the key's.
    assert results["host1"].outcome is not HostOutcome.UNREACHABLE
    assert results["host1"].ok > 0
    # Nothing at all, so neither the rendered config nor its database password, reached
    # the machine posing as host2.
    assert list(impostor.hosts[1].root.rglob("*")) == []
    dark = [e for e in store.events(run.id) if e.event == "runner_on_unreachable"]
    assert {e.host for e in dark} == {"host2"}
    assert all(e.data["reason"] == HOST_KEY_MISMATCH for e in dark)
    # The mitogen run was not quietly retried the stock way with other settings.
    assert "fallback_from" not in str(run.tuning)
    # The genuine host got the whole deploy over SSH with this strategy (linear: the stock
    # path, with pipelining): its app serves the release, and the member's secret reached
    # its config there and nothing the control plane keeps of the run.
    version = fleet.stack_app("amsterdam", "uitkering").version
    assert results["host1"].release_after == version
    [inst] = [i for i in fleet.instances(member="amsterdam", app="uitkering") if i.host == "host1"]
    assert http_get(inst.address, inst.port, "/version")[1]["version"] == version
    secret = lab_secret("amsterdam", "uitkering")
    config = impostor.hosts[0].root / "opt/controlplane/amsterdam/uitkering/current/config.json"
    assert secret in config.read_text()
    assert secret not in repr(store.events(run.id))
    assert secret not in tree_text(tmp_path / "var" / "runs" / run.id)


def lab_secret(member: str, app: str) -> str:
    password = (LAB / "vault-password").read_bytes().strip()
    vault = VaultLib([("default", VaultSecret(password))])
    doc = yaml.safe_load(vault.decrypt((LAB / "vault" / f"{member}.yml").read_bytes()))
    return str(doc["cp_secrets"][app]["db_password"])


PIPE = "{{ lookup('pipe', 'touch %s') }}"


def test_template_strings_in_the_inventory_stay_text_in_a_real_run(tmp_path: Path) -> None:
    """Validation keeps "{{ }}" out of the fleet; should one slip past it into a value a
    playbook reads, Ansible still takes it as text."""
    fleet = load_fleet(LAB)
    inventory = render_inventory(fleet, RenderContext(tmp_path / "var", sys.executable))
    mark = tmp_path / "ran"
    inventory["all"]["vars"]["cp_datacenter"] = PIPE % mark
    # status.yml checks cp_address is non-empty text and builds the health URL from it.
    inventory["all"]["hosts"]["lab-1"]["cp_address"] = PIPE % mark

    result = run_playbook(
        # The engine's default strategy: what a templated value would meet in production.
        PlaybookRequest(PLAYBOOKS_DIR / "status.yml", inventory, limit="lab-1", tuning=FAST),
        tmp_path / "runner",
        "status",
    )

    assert result.stats["lab-1"].dark == 0 and result.stats["lab-1"].ok > 0, result
    assert not mark.exists()


def test_everything_written_for_ansible_is_inert(tmp_path: Path) -> None:
    """Every string of the inventory and extravars ``write_inputs`` writes stays text, even
    when a play renders all of them (hostvars and the extravars)."""
    mark = tmp_path / "ran"
    fleet = load_fleet(LAB)
    inventory = render_inventory(fleet, RenderContext(tmp_path / "var", sys.executable))
    inventory["all"]["vars"]["cp_datacenter"] = PIPE % mark
    lab1 = inventory["all"]["hosts"]["lab-1"]
    lab1["cp_root"] = PIPE % mark
    lab1["cp_instances"][0]["version"] = PIPE % mark
    next(iter(inventory["all"]["children"].values()))["vars"]["cp_member"] = PIPE % mark
    write_inputs(
        tmp_path,
        inventory,
        {"cp_text": PIPE % mark, "cp_list": [PIPE % mark], "cp_map": {"k": PIPE % mark}},
    )
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: lab-1\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.debug:\n"
        "        msg: '{{ hostvars[inventory_hostname] }} {{ cp_text }}"
        " {{ cp_list }} {{ cp_map }}'\n"
    )
    proc = subprocess.run(
        [
            str(ansible_bin_dir() / "ansible-playbook"),
            "-i",
            str(tmp_path / "inventory" / "hosts.yml"),
            "-e",
            f"@{tmp_path / 'env' / 'extravars'}",
            str(play),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not mark.exists()
    # Datacenter, root, instance version, group var and three extravars, all shown as text.
    assert proc.stdout.count("lookup('pipe', 'touch") >= 7, proc.stdout
