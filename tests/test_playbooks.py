"""Real runs of the playbooks through ansible-runner, on local-connection hosts rooted in
temporary directories (addresses 127.0.30.x, clear of the lab demo's 127.0.10.x). Every
reference app a test starts is killed by its pidfile afterwards. (Deploys over SSH, with
the stock linear strategy and pipelining as well as mitogen's: test_security_ansible.)

The module shares one deployed fleet (each run costs seconds): the tests that follow the
first deploy either only read it, or put back what they changed; the broken-release test
mutates it and runs last.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret  # type: ignore[import-untyped]

from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import (
    Capacity,
    ConnectionKind,
    Fleet,
    Host,
    Instance,
    Stack,
    StackApp,
)
from tests.conftest import LAB
from tests.refapp_fixtures import (
    REFAPP,
    ROOT,
    PlaybookLab,
    Run,
    http_get,
    kill_refapps,
    refapp_pids,
    snapshot,
    tree_text,
    write_vault,
)
from tests.sshd import free_port

Deployed = tuple[PlaybookLab, Run]
HOSTS = {"t1": "127.0.30.1", "t2": "127.0.30.2"}
MEMBER, OTHER, APP = "amsterdam", "rotterdam", "uitkering"


def build_lab(base: Path) -> PlaybookLab:
    """amsterdam/uitkering 1.0.0 on t1 and t2, rotterdam/uitkering on t1 (never deployed)."""
    lab = load_fleet(LAB)
    roots = {name: base / "hosts" / name for name in HOSTS}
    hosts = tuple(
        Host(
            name=name,
            address=address,
            capacity=Capacity(vcpu=8, ram_gib=32, disk_gib=100),  # type: ignore[arg-type]
            connection=ConnectionKind.LOCAL,
            root=str(roots[name]),
        )
        for name, address in HOSTS.items()
    )
    stacks = (
        Stack(
            member=MEMBER,
            apps=(
                StackApp(
                    app=APP,
                    version="1.0.0",
                    instances=tuple(
                        Instance(host=name, port=free_port(address))
                        for name, address in HOSTS.items()
                    ),
                ),
            ),
        ),
        Stack(
            member=OTHER,
            apps=(
                StackApp(
                    app=APP,
                    version="1.0.0",
                    instances=(Instance(host="t1", port=free_port(HOSTS["t1"])),),
                ),
            ),
        ),
    )
    fleet = Fleet(name="pb-test", members=lab.members, hosts=hosts, apps=lab.apps, stacks=stacks)
    vault_dir = base / "vault"
    vault_dir.mkdir(parents=True)
    password_file = base / "vault-password"
    password_file.write_text(f"test-only-{secrets.token_hex(8)}\n")
    password_file.chmod(0o600)
    canaries = {
        member: {app.slug: f"canary-{member}-{secrets.token_hex(12)}" for app in lab.apps}
        for member in (MEMBER, OTHER)
    }
    for member, by_app in canaries.items():
        write_vault(vault_dir / f"{member}.yml", by_app, password_file)
    return PlaybookLab(base, fleet, vault_dir, password_file, canaries, roots)


def port_of(lab: PlaybookLab, host: str, member: str = MEMBER) -> int:
    (inst,) = [i for i in lab.fleet.instances(member=member, app=APP) if i.host == host]
    return inst.port


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """The module's fleet after a first deploy of amsterdam/uitkering 1.0.0."""
    lab = build_lab(tmp_path_factory.mktemp("playbooks"))
    try:
        run = lab.run(
            "deploy.yml",
            cp_member=MEMBER,
            cp_app=APP,
            cp_version="1.0.0",
            cp_vault_file=lab.vault_file(MEMBER),
        )
        yield lab, run
    finally:
        kill_refapps(*lab.roots.values())
        assert not refapp_pids(*lab.roots.values())


# -- deploy ------------------------------------------------------------------------------------


def test_fresh_deploy_serves_the_version_on_each_instance(deployed: Deployed) -> None:
    lab, run = deployed
    assert run.result.status == "successful", run
    for host, address in HOSTS.items():
        report = run.report(host, MEMBER)
        assert report == {
            "member": MEMBER,
            "app": APP,
            "port": port_of(lab, host),
            "before": None,
            "after": "1.0.0",
            "healthy": True,
            "error": None,
            # Local-connection (lab) hosts run the apps as the control plane's own user.
            "user": pwd.getpwuid(os.getuid()).pw_name,
        }
        assert http_get(address, port_of(lab, host), "/version") == (
            200,
            {"member": MEMBER, "app": APP, "version": "1.0.0"},
        )
        assert http_get(address, port_of(lab, host), "/healthz") == (200, {"status": "ok"})
        app_dir = lab.app_dir(host, MEMBER, APP)
        assert os.readlink(app_dir / "current") == "releases/1.0.0"
        assert (app_dir / "releases/1.0.0/VERSION").read_text() == "1.0.0\n"
        assert lab.pid(host, MEMBER, APP) is not None
    # One report per matching instance; rotterdam's instance on t1 was left alone.
    assert len(run.reports()) == 2
    assert not (lab.roots["t1"] / "opt/controlplane" / OTHER).exists()


def test_second_deploy_changes_nothing(deployed: Deployed) -> None:
    lab, _ = deployed
    pids = {h: lab.pid(h, MEMBER, APP) for h in HOSTS}

    run = lab.run(
        "deploy.yml",
        cp_member=MEMBER,
        cp_app=APP,
        cp_version="1.0.0",
        cp_vault_file=lab.vault_file(MEMBER),
    )

    assert run.result.status == "successful", run
    assert {h: s.changed for h, s in run.result.stats.items()} == {"t1": 0, "t2": 0}
    for host in HOSTS:
        report = run.report(host, MEMBER)
        assert (report["before"], report["after"], report["healthy"]) == ("1.0.0", "1.0.0", True)
    assert {h: lab.pid(h, MEMBER, APP) for h in HOSTS} == pids, "an unchanged app was restarted"


def test_secret_reaches_only_the_0600_config(deployed: Deployed) -> None:
    lab, run = deployed
    canary = lab.secrets[MEMBER][APP]
    vault_password = lab.password_file.read_text().strip()
    for host in HOSTS:
        config = lab.app_dir(host, MEMBER, APP) / "releases/1.0.0/config.json"
        assert canary in config.read_text()
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
    events = repr(run.events)
    artifacts = tree_text(lab.private_data_dir)  # stdout and job events of every run so far
    logs = tree_text(lab.roots["t1"] / "var/log") + tree_text(lab.roots["t2"] / "var/log")
    for text in (events, artifacts, logs):
        assert canary not in text
        assert vault_password not in text
    # The events do hold the runs' output: the scan looked at the right thing.
    assert "cp-report-release" in artifacts and "cp-report-release" in events
    for host, address in HOSTS.items():
        for path in ("/version", "/healthz"):
            assert canary not in str(http_get(address, port_of(lab, host), path))


# -- status, drift, patch ----------------------------------------------------------------------


def test_status_reports_every_instance_read_only(deployed: Deployed) -> None:
    lab, _ = deployed

    run = lab.run("status.yml")

    assert run.result.status == "successful", run
    assert all(s.changed == 0 for s in run.result.stats.values())
    for host in HOSTS:
        report = run.report(host, MEMBER)
        assert report["before"] == report["after"] == "1.0.0"
        assert report["healthy"] is True and report["running"] is True
    never = run.report("t1", OTHER)
    assert (never["after"], never["healthy"], never["running"]) == (None, False, False)


def test_drift_changes_nothing_and_finds_a_tampered_config(deployed: Deployed) -> None:
    lab, _ = deployed
    roots = list(lab.roots.values())
    config = lab.app_dir("t2", MEMBER, APP) / "releases/1.0.0/config.json"
    original = config.read_bytes()
    try:
        config.write_bytes(original.replace(b'"broken": false', b'"broken": true'))
        before = [snapshot(r) for r in roots]

        run = lab.run("drift.yml", check=True, cp_vault_dir=str(lab.vault_dir))

        assert run.result.status == "successful", run
        assert [snapshot(r) for r in roots] == before
        assert run.report("t1", MEMBER, "cp-report-drift") == {
            "member": MEMBER,
            "app": APP,
            "port": port_of(lab, "t1"),
            "desired": "1.0.0",
            "live": "1.0.0",
            "drift": False,
            "differences": [],
        }
        tampered = run.report("t2", MEMBER, "cp-report-drift")
        assert tampered["drift"] is True
        assert tampered["differences"] == ["the config differs"]
        assert run.result.stats["t2"].changed >= 1  # check mode: "would change" is the drift
        missing = run.report("t1", OTHER, "cp-report-drift")
        assert missing["drift"] is True and missing["live"] is None
        assert "release 1.0.0 is not installed" in missing["differences"]
        assert lab.secrets[MEMBER][APP] not in repr(run.events)
    finally:
        config.write_bytes(original)


def test_simulated_patch_records_a_level_once_and_restarts_nothing(deployed: Deployed) -> None:
    lab, _ = deployed
    pids = {h: lab.pid(h, MEMBER, APP) for h in HOSTS}

    first = lab.run("patch.yml", cp_patch_level="2024-06-01")
    again = lab.run("patch.yml", cp_patch_level="2024-06-01")

    assert first.result.status == again.result.status == "successful", (first, again)
    assert all(s.changed >= 1 for s in first.result.stats.values())
    assert all(s.changed == 0 for s in again.result.stats.values())
    for host in HOSTS:
        record = lab.roots[host] / "var/lib/controlplane/patch-level.json"
        assert '"level": "2024-06-01"' in record.read_text()
    assert [m["changed"] for _, m in again.reports("cp-report-patch")] == [False, False]
    assert {h: lab.pid(h, MEMBER, APP) for h in HOSTS} == pids


# -- a broken release and the way back (mutates the module's fleet: keep it last) ---------------


def test_broken_release_fails_the_hosts_and_rollback_restores_health(deployed: Deployed) -> None:
    lab, _ = deployed

    broken = lab.run(
        "deploy.yml",
        cp_member=MEMBER,
        cp_app=APP,
        cp_version="1.2.0",
        cp_broken=True,
        cp_health_timeout=2,
        cp_vault_file=lab.vault_file(MEMBER),
    )

    assert broken.result.status == "failed"
    for host, address in HOSTS.items():
        assert broken.result.stats[host].failures == 1
        report = broken.report(host, MEMBER)
        assert (report["before"], report["after"], report["healthy"]) == ("1.0.0", "1.2.0", False)
        assert "503" in report["error"]
        assert http_get(address, port_of(lab, host), "/healthz") == (503, {"status": "broken"})
        # The previous release is still on disk: rolling back is a link switch.
        assert (lab.app_dir(host, MEMBER, APP) / "releases/1.0.0/refapp.py").is_file()

    back = lab.run("rollback.yml", cp_member=MEMBER, cp_app=APP, cp_version="1.0.0")

    assert back.result.status == "successful", back
    for host, address in HOSTS.items():
        report = back.report(host, MEMBER)
        assert (report["before"], report["after"], report["healthy"]) == ("1.2.0", "1.0.0", True)
        assert http_get(address, port_of(lab, host), "/version")[1]["version"] == "1.0.0"
        assert os.readlink(lab.app_dir(host, MEMBER, APP) / "current") == "releases/1.0.0"

    nowhere = lab.run("rollback.yml", cp_member=MEMBER, cp_app=APP, cp_version="0.9.0")

    assert nowhere.result.status == "failed"
    report = nowhere.report("t1", MEMBER)
    assert report["after"] == "1.0.0" and report["healthy"] is False
    assert "0.9.0 of amsterdam/uitkering is not on t1" in report["error"]


# -- the reference app on its own, the lab vault, the linter -----------------------------------


def test_refapp_daemon_serves_stops_on_sigterm_and_hides_its_secret(tmp_path: Path) -> None:
    address = "127.0.30.9"
    port = free_port(address)
    release = tmp_path / "releases/9.9.9"
    release.mkdir(parents=True)
    shutil.copy(REFAPP, release / "refapp.py")
    config = release / "config.json"
    config.write_text(
        f'{{"member": "utrecht", "app": "reintegratie", "version": "9.9.9", "address": '
        f'"{address}", "port": {port}, "broken": false, "db_password": "hush-123"}}'
    )
    pidfile, log = tmp_path / "run/app.pid", tmp_path / "log/app.log"
    cmd = [sys.executable, str(release / "refapp.py")]
    ensure = [*cmd, "ensure", "--config", str(config), "--pidfile", str(pidfile), "--log", str(log)]
    try:
        started = subprocess.run(ensure, capture_output=True, text=True, check=True)
        assert '"action": "started"' in started.stdout
        again = subprocess.run(ensure, capture_output=True, text=True, check=True)
        assert '"action": "running"' in again.stdout
        assert http_get(address, port, "/version") == (
            200,
            {"member": "utrecht", "app": "reintegratie", "version": "9.9.9"},
        )
        assert http_get(address, port, "/nope")[0] == 404
        pid = int(pidfile.read_text())
        # The daemon does not inherit the deploying process's environment.
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not [e for e in environ if e.startswith(b"PYTEST") or b"VIRTUAL_ENV" in e]

        config.write_text(config.read_text().replace('"broken": false', '"broken": true'))
        changed = subprocess.run(ensure, capture_output=True, text=True, check=True)
        assert '"action": "restarted"' in changed.stdout and "config changed" in changed.stdout
        assert http_get(address, port, "/healthz") == (503, {"status": "broken"})

        stop = [*cmd, "stop", "--pidfile", str(pidfile)]
        assert '"stopped"' in subprocess.run(stop, capture_output=True, text=True).stdout
        assert not pidfile.exists()
        status = subprocess.run([*cmd, "status", "--pidfile", str(pidfile)], capture_output=True)
        assert status.returncode == 3
        text = log.read_text()
        assert "serving utrecht/reintegratie 9.9.9" in text and "stopped" in text
        assert "hush-123" not in text + started.stdout + changed.stdout
    finally:
        kill_refapps(tmp_path)


def test_lab_vault_files_open_with_the_lab_password() -> None:
    lab = load_fleet(LAB)
    password = (LAB / "vault-password").read_bytes().strip()
    vault = VaultLib([("default", VaultSecret(password))])
    for member in lab.members:
        path = LAB / "vault" / f"{member.slug}.yml"
        raw = path.read_bytes()
        assert raw.startswith(b"$ANSIBLE_VAULT;"), f"{path} is not encrypted"
        doc = yaml.safe_load(vault.decrypt(raw))
        for app in lab.apps:
            assert doc["cp_secrets"][app.slug]["db_password"], (member.slug, app.slug)


def test_playbooks_pass_ansible_lint() -> None:
    lint = Path(sys.executable).parent / "ansible-lint"
    if not lint.exists():
        pytest.fail("ansible-lint is not installed (it is in the project's test extra)")
    env = {**os.environ, "PATH": f"{lint.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["NO_COLOR"] = "1"
    proc = subprocess.run(
        [str(lint), "controlplane/playbooks/"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
