"""The deploy engine end to end: real ansible-runner runs over SSH against real sshd hosts.

Each real run costs seconds on two cores, so every test here checks several things a user
relies on at once, and the tests of ``TestOnOneProvisionedFleet`` share one fresh provision.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine as SqlEngine

from controlplane.deploy.engine import Engine, EngineConfig
from controlplane.deploy.history import plan_changes
from controlplane.deploy.model import HostOutcome, HostResult, Run, RunEvent, RunStatus
from controlplane.deploy.plan import DeployRequest, Planner
from controlplane.deploy.processes import orphans
from controlplane.errors import LockHeld
from controlplane.fleet.inventory import RenderContext
from controlplane.fleet.model import Fleet
from controlplane.store.db import make_engine, migrate
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
    kill_refapps(*rig.roots)


@pytest.fixture
def one_host_rig(ssh_lab: SshLab, sql: SqlEngine, tmp_path: Path) -> Iterator[Rig]:
    """As ``rig``, on one host: for a test about runs rather than hosts (each host's part
    of a run costs CPU on the two cores the test hosts share with the test)."""
    rig = Rig(ssh_lab, ssh_fleet(ssh_lab, hosts=1), sql, tmp_path)
    yield rig
    kill_refapps(*rig.roots)


class Rig:
    """A fleet on sshd hosts, a store, and an engine wired like the CLI wires them."""

    def __init__(self, lab: SshLab, fleet: Fleet, sql: SqlEngine, tmp: Path) -> None:
        self.lab = lab
        # The hosts' roots now: a later test's ssh_lab gives the hosts new ones.
        self.roots = [h.root for h in lab.hosts]
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
                # A queued run notices the lock is free sooner than the default second.
                lock_poll_seconds=0.2,
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


def span(results: list[HostResult]) -> tuple[datetime, datetime]:
    """When the first of these hosts started and the last one finished."""
    started = [h.started_at for h in results if h.started_at is not None]
    finished = [h.finished_at for h in results if h.finished_at is not None]
    assert results and len(started) == len(finished) == len(results), results
    return min(started), max(finished)


# -- one fresh provision, shared ------------------------------------------------------------


@pytest.fixture(scope="class")
def provisioned(
    ssh_lab_session: SshLab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Rig, list[Run]]]:
    """amsterdam's and rotterdam's uitkering 1.1.0 provisioned on three empty hosts by two
    deploys at the same time, once for the class below: its tests build on that state
    rather than each paying for a fresh provision of their own."""
    ssh_lab_session.ensure_running()
    roots = Path(tempfile.mkdtemp(prefix="cp-roots-"))
    roots.chmod(0o711)  # the member users the playbooks create must reach their files
    ssh_lab_session.fresh_roots(roots)
    tmp = tmp_path_factory.mktemp("provisioned")
    sql = make_engine(f"sqlite:///{tmp / 'cp.db'}")
    migrate(sql)
    rig = Rig(ssh_lab_session, ssh_fleet(ssh_lab_session, hosts=3), sql, tmp)
    runs: list[Run] = []

    def go(member: str) -> None:
        runs.append(rig.deploy(member, "uitkering"))

    try:
        threads = [threading.Thread(target=go, args=(m,)) for m in ("amsterdam", "rotterdam")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        yield rig, runs
    finally:
        kill_refapps(*rig.roots)
        ssh_lab_session.ensure_running()
        sql.dispose()
        shutil.rmtree(roots, ignore_errors=True)


class TestOnOneProvisionedFleet:
    """Tests on the shared provision, in file order: after the first, which checks the
    provision itself, each test changes at most one member's app and says which."""

    @pytest.fixture
    def rig(self, provisioned: tuple[Rig, list[Run]]) -> Iterator[Rig]:
        rig, _ = provisioned
        rig.lab.ensure_running()
        yield rig
        rig.lab.ensure_running()  # a test that stopped a host leaves it running again

    def test_fresh_provision_of_two_members_in_parallel_on_shared_hosts(
        self, provisioned: tuple[Rig, list[Run]]
    ) -> None:
        rig, runs = provisioned
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
            spans.append(span(results))
        (a0, a1), (b0, b1) = spans
        assert a0 < b1 and b0 < a1, f"runs did not overlap: {spans}"
        assert runs[0].tuning["deploy.yml"]["strategy"] in ("mitogen_linear", "linear")
        # Each host root holds only its own instances' release tree.
        for root in rig.roots[:3]:
            assert (root / "opt/controlplane/amsterdam/uitkering/current").is_symlink()
        assert not (rig.roots[3] / "opt").exists()

    def test_check_mode_changes_nothing_on_disk(self, rig: Rig) -> None:
        """Plans amsterdam's move from the provisioned 1.1.0 to 1.0.0; changes nothing."""

        def snapshot() -> dict[str, tuple[int, float, str]]:
            out = {}
            for root in rig.roots[:3]:
                for p in sorted(root.rglob("*")):
                    if p.suffix in (".log",):
                        continue
                    target = os.readlink(p) if p.is_symlink() else ""
                    st = p.lstat()
                    out[str(p)] = (st.st_size, st.st_mtime, target)
            return out

        before = snapshot()
        plan = rig.deploy("amsterdam", "uitkering", "1.0.0", check=True)
        assert plan.status is RunStatus.SUCCESSFUL, plan.error
        assert snapshot() == before
        changed_hosts = {
            e.host
            for e in rig.store.events(plan.id)
            if e.event == "runner_on_ok" and e.data.get("changed")
        }
        assert changed_hosts == {"host1", "host2", "host3"}
        assert rig.live(0, "amsterdam", "uitkering") == {"version": "1.1.0", "healthy": True}
        # The real role predicts, per host, the release it would switch to and the restart.
        releases = {
            h.host: (h.release_before, h.release_after) for h in rig.store.host_results(plan.id)
        }
        assert set(releases.values()) == {("1.1.0", "1.0.0")}, releases
        changes = plan_changes(rig.store.events(plan.id))
        assert {(c.host, c.release_before, c.release_after, c.restart) for c in changes} == {
            (h, "1.1.0", "1.0.0", True) for h in releases
        }

    def test_host_down_mid_rollout_halts_and_leaves_others_consistent(self, rig: Rig) -> None:
        """Moves rotterdam from 1.1.0 towards 1.0.0, one host at a time; host2 goes down."""
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
            DeployRequest("rotterdam", "uitkering", "1.0.0", serial="1", started_by="test")
        )
        run = rig.engine.execute(rig.engine.submit(spec).id, observer=StopSecondHost())

        assert stopped.is_set()
        assert run.status is RunStatus.FAILED
        hosts = {h.host: h for h in rig.store.host_results(run.id)}
        assert hosts["host2"].outcome is HostOutcome.UNREACHABLE
        assert hosts["host3"].outcome is HostOutcome.NOT_RUN
        assert hosts["host1"].release_after == "1.1.0"  # rolled back, consistent with host3
        assert rig.live(0, "rotterdam", "uitkering") == {"version": "1.1.0", "healthy": True}
        assert rig.live(2, "rotterdam", "uitkering") == {"version": "1.1.0", "healthy": True}
        assert rig.store.held_locks() == []

    def test_serial_update_then_broken_release_rolls_back_everywhere(self, rig: Rig) -> None:
        """Moves amsterdam from the provisioned 1.1.0 to 1.0.0, then fails to 1.2.0."""
        update = rig.deploy("amsterdam", "uitkering", "1.0.0", serial="1")
        assert update.status is RunStatus.SUCCESSFUL, update.error
        results = rig.store.host_results(update.id)
        assert [(h.release_before, h.release_after) for h in results] == [("1.1.0", "1.0.0")] * 3
        # One host at a time: each host finished before the next one started.
        ordered = sorted(results, key=lambda h: h.started_at)  # type: ignore[arg-type,return-value]
        for prev, nxt in itertools.pairwise(ordered):
            assert prev.finished_at <= nxt.started_at  # type: ignore[operator]

        broken = rig.deploy("amsterdam", "uitkering", "1.2.0", serial="1")
        assert broken.status is RunStatus.FAILED
        assert "rolled back" in (broken.error or "")
        after = rig.store.host_results(broken.id)
        assert after[0].outcome is HostOutcome.FAILED
        assert {h.release_after for h in after} == {"1.0.0"}
        for host in range(3):
            assert rig.live(host, "amsterdam", "uitkering") == {"version": "1.0.0", "healthy": True}
        # The CLI's rollback target: the release live before the last good deploy.
        assert rig.planner.last_good_release("amsterdam", "uitkering") == "1.1.0"


# -- tests that start from empty hosts ------------------------------------------------------


def test_same_app_never_overlaps_and_conflict_is_refused(one_host_rig: Rig) -> None:
    rig = one_host_rig
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
    end_first = span(rig.store.host_results(first.id))[1]
    start_second = span(rig.store.host_results(second[0].id))[0]
    assert end_first <= start_second


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
