"""The deploy engine end to end: real ansible-runner runs over SSH against real sshd hosts.

Each real run costs seconds on two cores, so every test here checks several things a user
relies on at once.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine as SqlEngine

from controlplane.deploy.engine import Engine, EngineConfig
from controlplane.deploy.model import HostOutcome, Run, RunEvent, RunStatus
from controlplane.deploy.plan import DeployRequest, Planner
from controlplane.deploy.processes import orphans
from controlplane.errors import LockHeld
from controlplane.fleet.inventory import RenderContext
from controlplane.fleet.model import Fleet
from controlplane.store.db import make_engine
from controlplane.store.runs import RunStore
from tests.conftest import LAB, ROOT, ssh_fleet
from tests.fleet_files import write_fleet
from tests.refapp_fixtures import kill_refapps
from tests.sshd import SshLab

pytestmark = pytest.mark.sshd


@pytest.fixture
def rig(ssh_lab: SshLab, sql: SqlEngine, tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(ssh_lab, ssh_fleet(ssh_lab, hosts=3), sql, tmp_path)
    yield rig
    kill_refapps(*[h.root for h in ssh_lab.hosts])


class Rig:
    """A fleet on three sshd hosts, a store, and an engine wired like the CLI wires them."""

    def __init__(self, lab: SshLab, fleet: Fleet, sql: SqlEngine, tmp: Path) -> None:
        self.lab = lab
        self.fleet = fleet
        self.store = RunStore(sql)
        self.tmp = tmp
        self.engine = Engine(
            fleet,
            self.store,
            EngineConfig(
                data_dir=tmp / "var",
                playbooks_dir=ROOT / "controlplane" / "playbooks",
                fleet_dir=LAB,
                vault_password_file=LAB / "vault-password",
                health_timeout_seconds=5,
            ),
            RenderContext(tmp / "var", sys.executable),
        )
        self.planner = Planner(fleet, self.store)

    def deploy(self, member: str, app: str, version: str | None = None, **kw: object) -> Run:
        [spec] = self.planner.plan_deploy(
            DeployRequest(member, app, version, started_by="test", **kw)  # type: ignore[arg-type]
        )
        run = self.engine.submit(spec, queue=True)
        return self.engine.execute(run.id)

    def port(self, member: str, app: str) -> int:
        return self.fleet.stack_app(member, app).instances[0].port

    def live(self, host: int, member: str, app: str) -> dict[str, object] | None:
        h = self.lab.hosts[host]
        try:
            conn = http.client.HTTPConnection(h.address, self.port(member, app), timeout=3)
            conn.request("GET", "/version")
            version = json.loads(conn.getresponse().read())
            conn.request("GET", "/healthz")
            healthy = conn.getresponse().status == 200
            conn.close()
        except OSError:
            return None
        return {"version": version["version"], "healthy": healthy}

    def hosts(self, run: Run) -> dict[str, object]:
        return {h.host: h for h in self.store.host_results(run.id)}


def test_fresh_provision_of_two_members_in_parallel_on_shared_hosts(rig: Rig) -> None:
    runs: list[Run] = []

    def go(member: str) -> None:
        runs.append(rig.deploy(member, "uitkering"))

    threads = [threading.Thread(target=go, args=(m,)) for m in ("amsterdam", "rotterdam")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert [r.status for r in runs] == [RunStatus.SUCCESSFUL] * 2, [r.error for r in runs]
    for member in ("amsterdam", "rotterdam"):
        for host in range(3):
            assert rig.live(host, member, "uitkering") == {"version": "1.1.0", "healthy": True}
    # The two members really ran at the same time on the same hosts.
    spans = []
    for run in runs:
        results = rig.store.host_results(run.id)
        assert {h.outcome for h in results} == {HostOutcome.CHANGED}
        assert all(h.release_before is None and h.release_after == "1.1.0" for h in results)
        spans.append((min(h.started_at for h in results), max(h.finished_at for h in results)))  # type: ignore[type-var]
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1, f"runs did not overlap: {spans}"
    assert runs[0].tuning["deploy.yml"]["strategy"] in ("mitogen_linear", "linear")
    # Each host root holds only its own instances' release tree.
    for host in rig.lab.hosts[:3]:
        assert (host.root / "opt/controlplane/amsterdam/uitkering/current").is_symlink()
    assert not (rig.lab.hosts[3].root / "opt").exists()


def test_serial_update_then_broken_release_rolls_back_everywhere(rig: Rig) -> None:
    first = rig.deploy("amsterdam", "uitkering", "1.0.0")
    assert first.status is RunStatus.SUCCESSFUL, first.error

    update = rig.deploy("amsterdam", "uitkering", "1.1.0", serial="1")
    assert update.status is RunStatus.SUCCESSFUL, update.error
    results = rig.store.host_results(update.id)
    assert [(h.release_before, h.release_after) for h in results] == [("1.0.0", "1.1.0")] * 3
    # One host at a time: each host finished before the next one started.
    ordered = sorted(results, key=lambda h: h.started_at)  # type: ignore[arg-type,return-value]
    for prev, nxt in itertools.pairwise(ordered):
        assert prev.finished_at <= nxt.started_at  # type: ignore[operator]

    broken = rig.deploy("amsterdam", "uitkering", "1.2.0", serial="1")
    assert broken.status is RunStatus.FAILED
    assert "rolled back" in (broken.error or "")
    after = rig.store.host_results(broken.id)
    assert after[0].outcome is HostOutcome.FAILED
    assert {h.release_after for h in after} == {"1.1.0"}
    for host in range(3):
        assert rig.live(host, "amsterdam", "uitkering") == {"version": "1.1.0", "healthy": True}
    # The CLI's rollback target: the release live before the last good deploy.
    assert rig.planner.last_good_release("amsterdam", "uitkering") == "1.0.0"


def test_host_down_mid_rollout_halts_and_leaves_others_consistent(rig: Rig) -> None:
    assert rig.deploy("rotterdam", "uitkering", "1.0.0").status is RunStatus.SUCCESSFUL
    victim = rig.lab.hosts[1]
    stopped = threading.Event()

    class StopSecondHost:
        def on_event(self, run: Run, event: RunEvent) -> None:
            # As soon as the first host's batch reports, the second host goes down.
            if event.data.get("report") and event.host == "host1" and not stopped.is_set():
                victim.stop()
                stopped.set()

        def on_status(self, run: Run) -> None:
            pass

    [spec] = rig.planner.plan_deploy(
        DeployRequest("rotterdam", "uitkering", "1.1.0", serial="1", started_by="test")
    )
    run = rig.engine.execute(rig.engine.submit(spec).id, observer=StopSecondHost())

    assert stopped.is_set()
    assert run.status is RunStatus.FAILED
    hosts = {h.host: h for h in rig.store.host_results(run.id)}
    assert hosts["host2"].outcome is HostOutcome.UNREACHABLE
    assert hosts["host3"].outcome is HostOutcome.NOT_RUN
    assert hosts["host1"].release_after == "1.0.0"  # rolled back, consistent with host3
    assert rig.live(0, "rotterdam", "uitkering") == {"version": "1.0.0", "healthy": True}
    assert rig.live(2, "rotterdam", "uitkering") == {"version": "1.0.0", "healthy": True}
    assert rig.store.held_locks() == []


def test_same_app_never_overlaps_and_conflict_is_refused(rig: Rig) -> None:
    [spec] = rig.planner.plan_deploy(DeployRequest("amsterdam", "reintegratie", started_by="a"))
    holder = rig.engine.submit(spec)
    with pytest.raises(LockHeld) as refused:
        rig.engine.submit(spec)
    assert refused.value.holder_run_id == holder.id
    assert len(rig.store.find()) == 1  # the refused request left nothing behind

    second: list[Run] = []
    waiter = threading.Thread(
        target=lambda: second.append(rig.engine.execute(rig.engine.submit(spec, queue=True).id))
    )
    waiter.start()
    first = rig.engine.execute(holder.id)
    waiter.join()
    assert first.status is RunStatus.SUCCESSFUL and second[0].status is RunStatus.SUCCESSFUL
    end_first = max(h.finished_at for h in rig.store.host_results(first.id))  # type: ignore[type-var]
    start_second = min(h.started_at for h in rig.store.host_results(second[0].id))  # type: ignore[type-var]
    assert end_first <= start_second


def test_check_mode_changes_nothing_on_disk(rig: Rig) -> None:
    assert rig.deploy("amsterdam", "uitkering", "1.0.0").status is RunStatus.SUCCESSFUL

    def snapshot() -> dict[str, tuple[int, float, str]]:
        out = {}
        for host in rig.lab.hosts[:3]:
            for p in sorted(host.root.rglob("*")):
                if p.suffix in (".log",):
                    continue
                target = os.readlink(p) if p.is_symlink() else ""
                st = p.lstat()
                out[str(p)] = (st.st_size, st.st_mtime, target)
        return out

    before = snapshot()
    plan = rig.deploy("amsterdam", "uitkering", "1.1.0", check=True)
    assert plan.status is RunStatus.SUCCESSFUL, plan.error
    assert snapshot() == before
    changed_hosts = {
        e.host
        for e in rig.store.events(plan.id)
        if e.event == "runner_on_ok" and e.data.get("changed")
    }
    assert changed_hosts == {"host1", "host2", "host3"}
    assert rig.live(0, "amsterdam", "uitkering") == {"version": "1.0.0", "healthy": True}


def test_kill_9_mid_run_leaves_interrupted_run_and_free_locks(rig: Rig, tmp_path: Path) -> None:
    fleet_dir = write_fleet(rig.fleet, tmp_path / "fleet", vault_from=LAB)
    env = {
        **os.environ,
        "CONTROLPLANE_DATA_DIR": str(tmp_path / "var"),
        "CONTROLPLANE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "CONTROLPLANE_VAULT_PASSWORD_FILE": str(LAB / "vault-password"),
    }
    cli = str(Path(sys.executable).parent / "controlplane")
    proc = subprocess.Popen(
        [
            cli,
            "deploy",
            "amsterdam",
            "--app",
            "uitkering",
            "--version",
            "1.0.0",
            "--serial",
            "1",
            "--fleet",
            str(fleet_dir),
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    store = RunStore(make_engine(env["CONTROLPLANE_DATABASE_URL"]))
    deadline = time.monotonic() + 60
    run_id = None
    while time.monotonic() < deadline:
        try:
            runs = store.find()
        except Exception:  # the CLI may still be creating the schema
            runs = []
        # Kill it once the first batch (host1) has switched and the second is under way.
        if runs and any(e.data.get("report") for e in store.events(runs[0].id)):
            run_id = runs[0].id
            break
        time.sleep(0.1)
    assert run_id is not None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store.get(run_id).status is RunStatus.RUNNING  # as the dead process left it
    assert store.held_locks()

    listed = subprocess.run(
        [cli, "runs", "list", "--json", "--fleet", str(fleet_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    [record] = json.loads(listed.stdout)
    assert record["status"] == "interrupted"
    assert store.held_locks() == []
    assert orphans(run_id) == []
    # Each host's actual live release is on the record, as its `current` link says.
    hosts = {h["host"]: h for h in record["hosts"]}
    assert set(hosts) == {"host1", "host2", "host3"}
    assert {h["outcome"] for h in hosts.values()} == {"interrupted"}
    assert hosts["host1"]["release_after"] == "1.0.0"
    for host in rig.lab.hosts[:3]:
        current = host.root / "opt/controlplane/amsterdam/uitkering/current"
        on_disk = Path(os.readlink(current)).name if current.is_symlink() else None
        assert hosts[host.name]["release_after"] == on_disk


def test_cancel_ends_the_ansible_process_group_and_records_it(rig: Rig) -> None:
    [spec] = rig.planner.plan_deploy(
        DeployRequest("amsterdam", "uitkering", "1.0.0", serial="1", started_by="test")
    )
    run = rig.engine.submit(spec)

    class CancelAfterFirstHost:
        def on_event(self, r: Run, event: RunEvent) -> None:
            if event.data.get("report"):
                rig.engine.cancel(r.id)  # as `controlplane runs cancel` does, via the store

        def on_status(self, r: Run) -> None:
            pass

    final = rig.engine.execute(run.id, observer=CancelAfterFirstHost())

    assert final.status is RunStatus.CANCELED
    assert final.rc == 254  # ansible-runner's rc for a canceled run
    assert orphans(run.id) == []
    assert rig.store.held_locks() == []
    hosts = {h.host: h for h in rig.store.host_results(run.id)}
    assert hosts["host1"].release_after == "1.0.0"
    assert hosts["host3"].outcome is HostOutcome.NOT_RUN
