"""Least privilege on hosts and on disk.

* Hosts: each member's app runs as that member's system user; its config is readable by
  that user and root only, so one member's app cannot read another member's secret.
  Tested on real sshd test hosts (run under the e2e lock), and the fallback when the play
  connects as a non-root user that cannot create users.
* The control plane's own files: umask 077 (data dir, database, artifacts, reports), loose
  trusted files refused (config file, fleet dir, vault password file), database URLs
  never shown with their password.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
from ansible.template import Templar, trust_as_template  # type: ignore[import-untyped]

from controlplane.cli import run as run_cli
from controlplane.deploy.runner import PlaybookRequest, run_playbook
from controlplane.errors import InvalidInput, StoreUnavailable
from controlplane.settings import PLAYBOOKS_DIR, load_settings, mask_database_url
from controlplane.store.db import make_engine, migrate
from tests.conftest import LAB, ssh_fleet
from tests.refapp_fixtures import FAST, PlaybookLab, Run, http_get, kill_refapps, write_vault
from tests.sshd import SshLab, start_lab

APP = "uitkering"
SECRET_URL = "postgresql://cp:hunter2-s3cret@127.0.0.1:1/controlplane"


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess (its entry point sets the umask), with a clean env."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLPLANE_")}
    return subprocess.run(
        [sys.executable, "-m", "controlplane", *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def cli_here(capsys: pytest.CaptureFixture[str]) -> Callable[..., CompletedProcess[str]]:
    """``cli`` in this process, through ``controlplane.cli.run`` (whose code the script's
    entry point exits with): for checks the entry point's umask plays no part in, without
    the seconds a new Python process takes to start."""

    def invoke(*args: str, cwd: Path, **env: str) -> CompletedProcess[str]:
        with pytest.MonkeyPatch.context() as patch:
            for name in [n for n in os.environ if n.startswith("CONTROLPLANE_")]:
                patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, value)
            patch.chdir(cwd)
            capsys.readouterr()
            code = run_cli(list(args))
            printed = capsys.readouterr()
        return CompletedProcess(args, code, printed.out, printed.err)

    return invoke


def loose_entries(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) that group or others can read or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
            found.append(f"{path} {stat.S_IMODE(st.st_mode):04o}")
    return found


def copy_fleet(dest: Path) -> Path:
    shutil.copytree(LAB, dest)
    return dest


# -- the member's user name ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "user"),
    [
        ("amsterdam", "cp-amsterdam"),
        ("den-haag", "cp-den-haag"),
        ("a" * 29, "cp-" + "a" * 29),  # exactly the 32 characters Linux allows
        ("sudwest-fryslan-sociaal-domein", "cp-sudwest-fryslan-soci-"),
        ("sudwest-fryslan-sociaal-werkbedrijf", "cp-sudwest-fryslan-soci-"),
    ],
)
def test_member_user_name_fits_the_linux_limit(member: str, user: str) -> None:
    name = member_user(member)
    assert len(name) <= 32
    if len(member) <= 29:
        assert name == user
    else:  # shortened: the slug's first 20 characters and a hash of the whole slug
        assert name == user + hashlib.sha256(member.encode()).hexdigest()[:8]


def member_user(member: str) -> str:
    """The playbooks' own expression for the user name, rendered by Ansible."""
    raw = yaml.safe_load((PLAYBOOKS_DIR / "roles/cp_release/vars/main.yml").read_text())
    templar = Templar(loader=DataLoader(), variables={"cp_release_instance": {"member": member}})
    return str(templar.template(trust_as_template(raw["cp_release_user"])))


# -- loose trusted files ---------------------------------------------------------------------


def test_shipped_lab_fleet_and_its_vault_password_pass() -> None:
    settings = load_settings(fleet=LAB)
    assert settings.resolved_vault_password_file == LAB / "vault-password"


@pytest.mark.parametrize(
    ("loosen", "what"),
    [
        ("vault-password", "vault password file"),
        (".", "fleet dir"),
        ("hosts.yml", "fleet dir entry"),
        ("vault/amsterdam.yml", "fleet dir entry"),
    ],
)
def test_group_or_other_writable_fleet_files_are_refused(
    tmp_path: Path, loosen: str, what: str
) -> None:
    fleet = copy_fleet(tmp_path / "fleet")
    target = (fleet / loosen).resolve()
    target.chmod(stat.S_IMODE(target.stat().st_mode) | 0o022)

    with pytest.raises(InvalidInput) as caught:
        load_settings(fleet=fleet)

    message = str(caught.value)
    assert message.startswith(f"{what} {target} is writable by group or others (mode ")
    assert message.endswith("); chmod go-w it")


def test_loose_config_file_is_refused_through_the_cli_with_exit_2(
    tmp_path: Path, cli_here: Callable[..., CompletedProcess[str]]
) -> None:
    config = tmp_path / "controlplane.toml"
    config.write_text('timezone = "Europe/Amsterdam"\n')
    config.chmod(0o666)
    password = copy_fleet(tmp_path / "fleet") / "vault-password"

    proc = cli_here("config", cwd=tmp_path, CONTROLPLANE_CONFIG=str(config))

    assert proc.returncode == 2, proc
    assert proc.stderr.strip() == (
        f"error: config file {config} is writable by group or others (mode 0666); chmod go-w it"
    )
    config.chmod(0o600)
    password.chmod(0o646)
    proc = cli_here("config", "--json", cwd=tmp_path, CONTROLPLANE_FLEET=str(tmp_path / "fleet"))
    assert proc.returncode == 2 and "vault password file" in proc.stderr and "0646" in proc.stderr
    assert proc.stdout == ""  # refused before anything was printed or written
    password.chmod(0o600)
    assert (
        cli_here("config", cwd=tmp_path, CONTROLPLANE_FLEET=str(tmp_path / "fleet")).returncode == 0
    )


# -- database URLs -----------------------------------------------------------------------------


def test_database_url_password_is_never_shown(
    tmp_path: Path, cli_here: Callable[..., CompletedProcess[str]]
) -> None:
    assert mask_database_url(SECRET_URL) == "postgresql://cp:***@127.0.0.1:1/controlplane"
    assert "hunter2" not in mask_database_url("not a url cp:hunter2@db")
    assert load_settings(database_url=SECRET_URL).masked_database_url == (
        "postgresql://cp:***@127.0.0.1:1/controlplane"
    )
    for bad in ("mysql://cp:hunter2@db/x", "nonsense cp:hunter2@db"):
        with pytest.raises(InvalidInput) as caught:
            make_engine(bad)
        assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
    with pytest.raises(StoreUnavailable) as down:
        migrate(make_engine(SECRET_URL))  # nothing listens on port 1
    assert "hunter2" not in str(down.value) and "cp:***@127.0.0.1" in str(down.value)

    shown = cli_here("config", "--json", cwd=tmp_path, CONTROLPLANE_DATABASE_URL=SECRET_URL)
    assert shown.returncode == 0, shown
    assert "hunter2" not in shown.stdout + shown.stderr
    assert (
        json.loads(shown.stdout)["database_url"] == "postgresql://cp:***@127.0.0.1:1/controlplane"
    )


# -- the control plane's files are private (a real check-mode run of the lab) ------------------


def test_data_dir_database_artifacts_and_reports_are_private(tmp_path: Path) -> None:
    data = tmp_path / "var"
    env = {"CONTROLPLANE_DATA_DIR": str(data)}

    run = cli("deploy", "amsterdam", "--app", APP, "--check", "--json", cwd=tmp_path, **env)
    report = tmp_path / "board.csv"
    costs = cli("costs", "report", "--period", "2026-10", "-o", str(report), cwd=tmp_path, **env)

    assert run.returncode == 0, run.stderr
    assert costs.returncode == 0, costs.stderr
    assert (data / "controlplane.db").is_file()
    assert [p for p in (data / "runs").rglob("*") if p.is_file()], "the run left no artifacts"
    assert loose_entries(data) == []
    assert stat.S_IMODE(report.stat().st_mode) == 0o600


# -- member users on the sshd test hosts -------------------------------------------------------


def proc_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def read_as(user: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", user, "--", "cat", str(path)], capture_output=True, text=True
    )


def ssh_playbook_lab(
    lab: SshLab, tmp_path: Path, members: tuple[str, ...], user: str = "root"
) -> PlaybookLab:
    """The first sshd host as a one-host fleet, a vault with a canary secret per member."""
    fleet = ssh_fleet(lab, hosts=1)
    fleet = dataclasses.replace(fleet, hosts=(dataclasses.replace(fleet.hosts[0], user=user),))
    password_file = tmp_path / "vault-password"
    password_file.write_text(f"test-only-{secrets.token_hex(8)}\n")
    vault_dir = tmp_path / "vault"
    vault_dir.mkdir()
    canaries = {m: {APP: f"canary-{m}-{secrets.token_hex(8)}"} for m in members}
    for member, by_app in canaries.items():
        write_vault(vault_dir / f"{member}.yml", by_app, password_file)
    roots = {h.name: h.root for h in lab.hosts[:1]}
    return PlaybookLab(tmp_path, fleet, vault_dir, password_file, canaries, roots)


def deploy(lab: PlaybookLab, member: str) -> tuple[dict[str, object], int]:
    """Deploy ``member``'s app to the one host; its report and the run's changed count."""
    host = lab.fleet.hosts[0].name
    events: list[dict[str, Any]] = []

    def keep(event: dict[str, Any]) -> bool:
        events.append(event)
        return True

    lab.runs += 1
    result = run_playbook(
        PlaybookRequest(
            PLAYBOOKS_DIR / "deploy.yml",
            lab.inventory,
            extravars={
                "cp_member": member,
                "cp_app": APP,
                "cp_version": lab.fleet.stack_app(member, APP).version,
                "cp_vault_file": lab.vault_file(member),
            },
            limit=host,
            tuning=FAST,
            envvars={"ANSIBLE_VAULT_PASSWORD_FILE": str(lab.password_file)},
            timeout_seconds=300,
        ),
        # A runner dir per member: the two members' deploys may run at the same time.
        lab.private_data_dir / member,
        f"deploy-{member}-{lab.runs}",
        event_handler=keep,
    )
    run = Run(result, events)
    assert result.status == "successful", run
    return run.report(host, member), result.stats[host].changed


@pytest.mark.sshd
def test_each_members_app_runs_as_its_own_user_and_cannot_read_another_members_config(
    ssh_lab: SshLab, tmp_path: Path
) -> None:
    lab = ssh_playbook_lab(ssh_lab, tmp_path, ("amsterdam", "rotterdam"))
    host = lab.fleet.hosts[0]
    root = lab.roots[host.name]
    try:
        # At the same time, as provision deploys members sharing a host.
        members = ("amsterdam", "rotterdam")
        with ThreadPoolExecutor(len(members)) as pool:
            deployed = list(pool.map(partial(deploy, lab), members))
        reports = {m: report for m, (report, _) in zip(members, deployed, strict=True)}

        for member, report in reports.items():
            user = pwd.getpwnam(f"cp-{member}")
            assert report["user"] == user.pw_name and report["healthy"] is True
            pid = lab.pid(host.name, member, APP)
            assert pid is not None and proc_uid(pid) == user.pw_uid
            config = lab.app_dir(host.name, member, APP) / "current/config.json"
            st = config.stat()
            assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, user.pw_gid)
            port = next(i.port for i in lab.fleet.instances(member=member, app=APP))
            assert http_get(host.address, port, "/healthz") == (200, {"status": "ok"})

        own = lab.app_dir(host.name, "amsterdam", APP) / "current/config.json"
        other = lab.app_dir(host.name, "rotterdam", APP) / "current/config.json"
        assert lab.secrets["amsterdam"][APP] in read_as("cp-amsterdam", own).stdout
        denied = read_as("cp-amsterdam", other)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        assert lab.secrets["rotterdam"][APP] not in denied.stdout

        again, changed = deploy(lab, "amsterdam")
        assert changed == 0 and again["user"] == "cp-amsterdam"
    finally:
        kill_refapps(root)


@pytest.fixture
def deployer() -> Iterator[tuple[str, Path]]:
    """A non-root user with a shell and a home, for a play that connects without root."""
    name = "cp-test-deployer"
    home = Path(tempfile.mkdtemp(prefix="cp-deployer-"))
    home.chmod(0o711)
    subprocess.run(["userdel", name], capture_output=True)
    subprocess.run(
        ["useradd", "--shell", "/bin/sh", "--home-dir", str(home / "home"), "--create-home", name],
        check=True,
    )
    # sshd refuses a locked ("!") account even for key logins when PAM is off.
    subprocess.run(["usermod", "--password", "*", name], check=True)
    try:
        yield name, home
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.sshd
def test_a_play_without_root_runs_the_app_as_the_connecting_user(
    deployer: tuple[str, Path], tmp_path: Path
) -> None:
    name, base = deployer
    account = pwd.getpwnam(name)
    # sshd reads authorized_keys as the logging-in user: the lab must be reachable by it.
    lab = start_lab(base / "sshd", count=1, first_octet=9)
    (base / "sshd" / "authorized_keys").chmod(0o644)
    host = lab.hosts[0]
    host.root = base / "root"
    host.root.mkdir()
    os.chown(host.root, account.pw_uid, account.pw_gid)
    try:
        playbooks = ssh_playbook_lab(lab, tmp_path, ("amsterdam",), user=name)

        report, _ = deploy(playbooks, "amsterdam")

        assert report["user"] == name and report["healthy"] is True
        pid = playbooks.pid(host.name, "amsterdam", APP)
        assert pid is not None and proc_uid(pid) == account.pw_uid
        config = playbooks.app_dir(host.name, "amsterdam", APP) / "current/config.json"
        st = config.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, account.pw_uid)
    finally:
        kill_refapps(host.root)
        lab.stop_all()
