"""What may cross into Ansible, checked without running it: playbooks, extravars, hosts,
host key settings, the ControlPath directory and the scrubbing of runner's artifacts.

Real runs that show the same rules hold end to end are in test_security_ansible.py.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine as SqlEngine

from controlplane.deploy.boundary import (
    EXTRAVARS,
    check_extravars,
    check_hosts,
    resolve_playbook,
)
from controlplane.deploy.engine import Engine, EngineConfig, Execution
from controlplane.deploy.events import HOST_KEY_MISMATCH, to_run_event, unreachable_reason
from controlplane.deploy.model import RunEvent, RunKind, RunSpec
from controlplane.deploy.records import PlayOutcome, summary
from controlplane.deploy.rollout import judge
from controlplane.deploy.runner import (
    HostStats,
    PlaybookRequest,
    PlaybookResult,
    Tuning,
    ansible_env,
    control_path_dir,
    run_playbook,
    scrub_leftover_artifacts,
    secure_env,
)
from controlplane.errors import InvalidInput, Refused
from controlplane.fleet.inventory import RenderContext, render_inventory, unsafe_yaml
from controlplane.fleet.loader import load_fleet
from controlplane.settings import PLAYBOOKS_DIR
from controlplane.store.runs import RunStore
from tests.conftest import LAB, ROOT

ROTTERDAM = ROOT / "controlplane" / "inventories" / "rotterdam"
TEMPLATE = "{{ lookup('pipe', 'id') }}"


# -- playbooks -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXTRAVARS))
def test_each_package_playbook_is_accepted_by_name_or_path(name: str) -> None:
    assert resolve_playbook(name) == (PLAYBOOKS_DIR / name).resolve()
    assert resolve_playbook(PLAYBOOKS_DIR / name) == (PLAYBOOKS_DIR / name).resolve()


def test_every_playbook_in_the_package_has_an_extravars_list() -> None:
    assert {p.name for p in PLAYBOOKS_DIR.glob("*.yml")} == set(EXTRAVARS)


@pytest.mark.parametrize(
    "playbook",
    [
        "site.yml",
        "roles/cp_patch/tasks/main.yml",
        str(ROOT / "tests" / "playbooks" / "write_marker.yml"),
        "../playbooks/deploy.yml/../../../etc/deploy.yml",
    ],
)
def test_any_other_playbook_is_refused(playbook: str) -> None:
    with pytest.raises(InvalidInput, match=r"^playbook: "):
        resolve_playbook(playbook)


def test_a_playbook_of_the_same_name_elsewhere_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "deploy.yml"
    copy.write_text("- hosts: all\n")
    with pytest.raises(InvalidInput, match="is not in"):
        resolve_playbook(copy)


# -- extravars -------------------------------------------------------------------------------

GOOD_DEPLOY = {
    "cp_member": "den-haag",
    "cp_app": "uitkering",
    "cp_version": "1.2.3-rc1",
    "cp_broken": False,
    "cp_health_path": "/healthz",
    "cp_health_timeout": 15,
    "cp_vault_file": "inventories/lab/vault/den-haag.yml",
    "cp_serial": "50%",
    "cp_max_fail_percentage": 25.0,
}


def test_the_engines_deploy_vars_pass() -> None:
    assert check_extravars("deploy.yml", GOOD_DEPLOY) == GOOD_DEPLOY
    drift = {"cp_member": "utrecht", "cp_broken_versions": {"uitkering": ["1.2.0"]}}
    assert check_extravars("drift.yml", {**drift, "cp_vault_dir": "/etc/cp/vault"})
    assert check_extravars("patch.yml", {"cp_serial": "1", "cp_patch_level": "2024-06-01"})


@pytest.mark.parametrize(
    ("playbook", "key", "value", "says"),
    [
        ("deploy.yml", "cp_member", TEMPLATE, "not a slug"),
        ("deploy.yml", "cp_member", "amsterdam\n", "not a slug"),
        ("deploy.yml", "cp_app", TEMPLATE, "not a slug"),
        ("deploy.yml", "cp_version", "1.2.3\n", "not a plain version"),
        ("deploy.yml", "cp_version", TEMPLATE, "not a plain version"),
        ("deploy.yml", "cp_health_path", "/healthz\n", "not a URL path"),
        ("deploy.yml", "cp_health_path", "/{{ x }}", "not a URL path"),
        ("deploy.yml", "cp_vault_file", "/vault/{{ x }}.yml", "not a plain file path"),
        ("deploy.yml", "cp_vault_file", "-e@x", "not a plain file path"),
        ("deploy.yml", "cp_broken", "false", "true or false"),
        ("deploy.yml", "cp_health_timeout", True, "whole number of seconds"),
        ("deploy.yml", "cp_serial", "0%", "host count"),
        ("deploy.yml", "cp_serial", "{{ 1 }}", "host count"),
        ("deploy.yml", "cp_max_fail_percentage", float("nan"), "from 0 to 100"),
        ("deploy.yml", "cp_process_manager", "{{ x }}", "pidfile or systemd"),
        ("drift.yml", "cp_vault_dir", TEMPLATE, "not a plain file path"),
        ("drift.yml", "cp_broken_versions", {"uitkering": [TEMPLATE]}, "not a plain version"),
        ("drift.yml", "cp_broken_versions", {TEMPLATE: []}, "not a slug"),
        ("patch.yml", "cp_patch_level", TEMPLATE, "not a patch level"),
        ("patch.yml", "cp_patch_mode", "reboot", "simulate or apt"),
    ],
)
def test_a_bad_extravar_is_refused_naming_it(
    playbook: str, key: str, value: Any, says: str
) -> None:
    with pytest.raises(InvalidInput, match=rf"^extravars\.{key}[.:\[]") as refused:
        check_extravars(playbook, {key: value})
    assert says in str(refused.value)


@pytest.mark.parametrize(
    ("playbook", "key"),
    [
        ("status.yml", "cp_version"),
        ("patch.yml", "cp_member"),
        ("deploy.yml", "ansible_connection"),
        ("deploy.yml", "ansible_ssh_common_args"),
        ("rollback.yml", "marker_token"),
    ],
)
def test_an_extravar_the_playbook_does_not_take_is_refused(playbook: str, key: str) -> None:
    with pytest.raises(InvalidInput, match=f"^extravars.{key}: not an extravar of {playbook}"):
        check_extravars(playbook, {key: "x"})


# -- hosts -----------------------------------------------------------------------------------

LAB_INVENTORY = render_inventory(load_fleet(LAB), RenderContext(Path("/var/cp"), sys.executable))


@pytest.mark.parametrize("limit", [None, "", " , ", ","])
def test_no_hosts_is_refused_not_every_host(limit: str | None) -> None:
    with pytest.raises(InvalidInput, match=r"^hosts: a run needs at least one host"):
        check_hosts(limit, LAB_INVENTORY)


@pytest.mark.parametrize("limit", ["all", "*", "lab-*", "lab-1,member_utrecht", "lab-9", "!lab-1"])
def test_only_named_hosts_of_the_inventory_are_accepted(limit: str) -> None:
    with pytest.raises(InvalidInput, match=r"^hosts: .* is not a host of the fleet"):
        check_hosts(limit, LAB_INVENTORY)
    assert check_hosts("lab-2, lab-1,lab-2", LAB_INVENTORY) == ("lab-2", "lab-1")


def test_run_playbook_refuses_before_anything_is_written(tmp_path: Path) -> None:
    request = PlaybookRequest(PLAYBOOKS_DIR / "status.yml", LAB_INVENTORY, limit="")
    with pytest.raises(InvalidInput, match=r"^hosts: "):
        run_playbook(request, tmp_path / "runner", "status", event_handler=None)
    assert not (tmp_path / "runner").exists()


class NeverRunner:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: PlaybookRequest, pdd: Path, ident: str, **kw: Any) -> Any:
        self.calls += 1
        return PlaybookResult("successful", 0, {"lab-1": HostStats(ok=1)}, pdd)


def test_the_engine_never_turns_an_empty_host_list_into_every_host(
    sql: SqlEngine, tmp_path: Path
) -> None:
    """Before, no hosts became no --limit: a play on every host of the fleet."""
    store = RunStore(sql)
    runner = NeverRunner()
    engine = Engine(
        load_fleet(LAB),
        store,
        EngineConfig(data_dir=tmp_path, playbooks_dir=PLAYBOOKS_DIR, fleet_dir=LAB),
        RenderContext(tmp_path, sys.executable),
        runner=runner,
        clock=lambda: datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
    )
    spec = RunSpec(kind=RunKind.PATCH, playbook="patch.yml", started_by="test", hosts=("lab-1",))
    ex = Execution(engine.submit(spec), None)

    with pytest.raises(InvalidInput, match=r"^hosts: a run needs at least one host"):
        engine.run_once(ex, "patch.yml", [], {}, False, Tuning())

    assert runner.calls == 0
    engine.run_once(ex, "patch.yml", ["lab-1"], {}, False, Tuning())
    assert runner.calls == 1


# -- host keys -------------------------------------------------------------------------------


def test_ssh_hosts_are_checked_against_their_own_known_hosts() -> None:
    fleet = load_fleet(ROTTERDAM)
    inv = render_inventory(fleet, RenderContext(Path("/var/cp"), sys.executable))
    for host in fleet.hosts:
        hv = inv["all"]["hosts"][host.name]
        assert hv["ansible_host_key_checking"] is True
        args = hv["ansible_ssh_common_args"].split()
        assert args[:2] == ["-o", "StrictHostKeyChecking=yes"]
        assert f"UserKnownHostsFile={ROTTERDAM / 'known_hosts'}" in args
        assert "UpdateHostKeys=no" in args
    # The shipped file lists every host by name and address.
    known = (ROTTERDAM / "known_hosts").read_text()
    for host in fleet.hosts:
        assert f"{host.name},{host.address} ssh-ed25519 " in known


def test_the_environment_forces_host_key_checking_whatever_the_caller_sets(
    tmp_path: Path,
) -> None:
    caller = {
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_SSH_HOST_KEY_CHECKING": "False",
        "ANSIBLE_SSH_ARGS": "-o StrictHostKeyChecking=no",
        "ANSIBLE_SSH_CONTROL_PATH": "/tmp/shared-%%C",
    }
    for tuning in (Tuning(), Tuning(strategy="mitogen_linear")):
        env = secure_env({**ansible_env(tuning, tmp_path), **caller}, tmp_path)
        assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
        assert env["ANSIBLE_SSH_HOST_KEY_CHECKING"] == "True"
        # ssh keeps the first value of an option: ours comes first.
        assert env["ANSIBLE_SSH_ARGS"].startswith("-o StrictHostKeyChecking=yes ")
        assert "ANSIBLE_SSH_CONTROL_PATH" not in env
        assert env["ANSIBLE_SSH_CONTROL_PATH_DIR"] == str(tmp_path)


@pytest.mark.parametrize(
    "msg",
    [
        "Failed to connect to the host via ssh: @@@@\r\n@ WARNING: REMOTE HOST IDENTIFICATION "
        "HAS CHANGED! @\r\n" + "x" * 900 + "\r\nHost key verification failed.",
        "No ED25519 host key is known for [127.0.0.3]:2222 and you have requested strict "
        "checking.\r\nHost key verification failed.",
        "Host key checking is enabled, and SSH reported an unrecognized or mismatching host key.",
    ],
)
def test_host_key_failures_are_named_on_the_event_and_in_the_run_error(msg: str) -> None:
    assert unreachable_reason(msg) == HOST_KEY_MISMATCH
    raw = {
        "event": "runner_on_unreachable",
        "event_data": {"host": "srv-02", "task": "t", "res": {"unreachable": True, "msg": msg}},
    }
    event = to_run_event("r1", 0, raw)
    assert event is not None and event.data["reason"] == HOST_KEY_MISMATCH
    result = PlaybookResult(
        "failed", 4, {"srv-01": HostStats(ok=3), "srv-02": HostStats(dark=1)}, Path(".")
    )
    play = PlayOutcome(result, [event], [], {}, {})
    assert play.unreachable_hosts == {"srv-02": HOST_KEY_MISMATCH}
    assert play.host_problems() == "srv-02: host key mismatch"
    verdict = judge(["srv-01", "srv-02"], "1.1.0", [], set(), play.unreachable_hosts)
    assert summary(verdict) == "rollout stopped: srv-01 not_run, srv-02: host key mismatch"


def test_a_host_that_is_simply_down_is_unreachable_without_blame() -> None:
    assert unreachable_reason("ssh: connect to host 10.0.0.1 port 22: Connection refused") == (
        "unreachable"
    )
    event = RunEvent("r", 0, "runner_on_unreachable", datetime.now(UTC), host="a", data={})
    result = PlaybookResult("failed", 4, {"a": HostStats(dark=1)}, Path("."))
    assert PlayOutcome(result, [event], [], {}, {}).host_problems() == "a: unreachable"


# -- the ControlPath directory ---------------------------------------------------------------


def test_the_control_dir_lives_under_a_short_data_dir(tmp_path: Path) -> None:
    base = Path("/tmp") / f"cp{os.getpid()}"
    try:
        path = control_path_dir(base)
        assert path == base / "ssh"
        assert (path.stat().st_mode & 0o777) == 0o700
    finally:
        if (base / "ssh").exists():
            (base / "ssh").rmdir()
        if base.exists():
            base.rmdir()


def test_a_long_data_dir_gets_a_short_private_dir_of_its_own(tmp_path: Path) -> None:
    base = tmp_path / ("d" * 60)
    path = control_path_dir(base)
    assert len(str(path)) <= 48
    assert path != control_path_dir(tmp_path / ("e" * 60))
    assert path == control_path_dir(base)  # the same data dir, the same sockets


@pytest.mark.parametrize("problem", ["symlink", "mode", "owner", "file"])
def test_a_control_dir_that_is_not_private_is_refused(tmp_path: Path, problem: str) -> None:
    """Someone else made the directory first (in the shared temp dir, where anyone can)."""
    path = control_path_dir(tmp_path / ("d" * 60))
    path.rmdir()
    try:
        if problem == "symlink":
            elsewhere = tmp_path / "elsewhere"
            elsewhere.mkdir(mode=0o700)
            path.symlink_to(elsewhere)
        elif problem == "file":
            path.write_text("")
        else:
            path.mkdir(mode=0o700)
            if problem == "mode":
                path.chmod(0o755)
            else:
                os.chown(path, 65534, 65534)
        with pytest.raises(Refused, match=r"^ssh control dir .* refusing to use it"):
            control_path_dir(tmp_path / ("d" * 60))
    finally:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            path.rmdir()


# -- runner's artifacts ----------------------------------------------------------------------

SECRET = "s3cret-db-password"


def test_leftover_command_artifacts_lose_the_environment(tmp_path: Path) -> None:
    runs = tmp_path / "runs"

    def artifact(run: str, ident: str, text: str) -> Path:
        path = runs / run / "artifacts" / ident / "command"
        path.parent.mkdir(parents=True)
        path.write_text(text)
        return path

    full = {"command": ["ansible-playbook"], "cwd": "/x", "env": {"DB_PASSWORD": SECRET}}
    a = artifact("run-a", "1-deploy-linear", json.dumps(full))
    b = artifact("run-b", "1-patch-linear", json.dumps(full)[:40] + SECRET)  # cut by a crash
    c = artifact("run-b", "2-status-linear", json.dumps({"command": ["x"]}))
    other = runs / "run-a" / "artifacts" / "1-deploy-linear" / "stdout"
    other.write_text("PLAY [deploy]")

    assert scrub_leftover_artifacts(runs) == 2
    assert json.loads(a.read_text()) == {"command": ["ansible-playbook"], "cwd": "/x"}
    assert not b.exists()
    assert json.loads(c.read_text()) == {"command": ["x"]}
    assert other.read_text() == "PLAY [deploy]"
    assert all(SECRET not in p.read_text() for p in runs.rglob("*") if p.is_file())
    assert scrub_leftover_artifacts(runs) == 0
    assert scrub_leftover_artifacts(tmp_path / "nowhere") == 0


# -- unsafe YAML -----------------------------------------------------------------------------


def test_every_string_value_is_tagged_unsafe_and_nothing_else_changes() -> None:
    data = {"all": {"vars": {"a": TEMPLATE, "n": 1, "b": True}, "hosts": {"h": {"l": ["x", 2]}}}}
    text = unsafe_yaml(data)

    class Loader(yaml.SafeLoader):
        pass

    tagged: list[str] = []

    def unsafe(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
        tagged.append(loader.construct_scalar(node))
        return tagged[-1]

    Loader.add_constructor("!unsafe", unsafe)
    assert yaml.load(text, Loader=Loader) == data
    assert sorted(tagged) == sorted([TEMPLATE, "x"])
