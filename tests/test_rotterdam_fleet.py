"""The shipped production example, deployed: a copy of ``inventories/rotterdam`` over SSH.

Only what has to point at this machine is changed: each host's address and SSH port (the
sshd test hosts), the client key and the known_hosts file (the test's), each host's root
(a directory per sshd host, as they share one filesystem) and the process manager. The
rest is the example as shipped: the ``deploy`` user with ``become`` (passwordless sudo),
``/usr/bin/python3``, the members (all window-required), apps, stacks, windows, and the
``vault/<member>.yml`` layout with its password outside the fleet. One member's app is
deployed, upgraded and rolled back through the CLI.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.cli import run as cli_run
from tests.conftest import ROOT, missing
from tests.refapp_fixtures import http_get, kill_refapps, read_pid, write_vault
from tests.sshd import SshLab

pytestmark = pytest.mark.sshd

SHIPPED = ROOT / "controlplane" / "inventories" / "rotterdam"
MEMBER, APP, PORT = "rotterdam", "reintegratie", 9201  # on rtm-app-01 and rtm-app-02
DEPLOY_USER = "deploy"
SUDOERS = Path("/etc/sudoers.d/controlplane-test-deploy")
SECRET = "rtm-test-db-password-7c1e"
EMERGENCY = "test: the example production fleet must deploy as shipped"

Cli = Callable[..., tuple[int, Any]]


@pytest.fixture(scope="module")
def deploy_user(ssh_lab_session: SshLab) -> Iterator[str]:
    """The example's ``deploy`` user with passwordless sudo and the test's client key, as
    docs/production.md asks of every host. The sshd test hosts share this machine's users,
    so it is made here, and removed again when this module made it."""
    if os.geteuid() != 0:
        missing("creating the deploy user needs root")
    if shutil.which("sudo") is None:
        missing("sudo is not installed (Debian package sudo); become needs it")
    created = False
    try:
        pwd.getpwnam(DEPLOY_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/sh", DEPLOY_USER],
            check=True,
            capture_output=True,
        )
        created = True
    account = pwd.getpwnam(DEPLOY_USER)
    # A key-only account: "!" (useradd's locked password) makes sshd refuse it without PAM.
    subprocess.run(["usermod", "-p", "*", DEPLOY_USER], check=True, capture_output=True)
    ssh_dir = Path(account.pw_dir) / ".ssh"
    keys = ssh_dir / "authorized_keys"
    kept = keys.read_text() if keys.exists() else None
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys.write_text((kept or "") + ssh_session_key(ssh_lab_session).read_text())
    keys.chmod(0o600)
    for path in (ssh_dir, keys):
        os.chown(path, account.pw_uid, account.pw_gid)
    SUDOERS.write_text(f"{DEPLOY_USER} ALL=(ALL) NOPASSWD: ALL\n")
    SUDOERS.chmod(0o440)
    yield DEPLOY_USER
    SUDOERS.unlink(missing_ok=True)
    if created:
        subprocess.run(["userdel", "--remove", DEPLOY_USER], check=False, capture_output=True)
    elif kept is None:
        keys.unlink(missing_ok=True)
    else:
        keys.write_text(kept)


def ssh_session_key(lab: SshLab) -> Path:
    return Path(f"{lab.client_key}.pub")


def rotterdam_copy(lab: SshLab, dest: Path) -> Path:
    """The shipped fleet in ``dest``, its hosts pointed at the sshd test hosts."""
    shutil.copytree(SHIPPED, dest)
    doc = yaml.safe_load((dest / "hosts.yml").read_text())
    for i, host in enumerate(doc["hosts"]):
        # Six hosts on four sshd hosts: rtm-app-05/06 share 127.0.0.2/3 with 01/02, whose
        # instance ports differ from theirs (the fleet's port check keys on the address).
        test_host = lab.hosts[i % len(lab.hosts)]
        host["address"] = test_host.address
        host["port"] = test_host.port
        host["private_key_file"] = str(lab.client_key)
        host["root"] = str(test_host.root)
        # PID 1 is not systemd on this machine; tests/test_systemd_units.py checks the unit.
        host["process_manager"] = "pidfile"
    (dest / "hosts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    # known_hosts_file stays "known_hosts" (beside hosts.yml); only the keys are the test's.
    shutil.copy(lab.known_hosts, dest / "known_hosts")
    return dest


@pytest.fixture
def vault_password(tmp_path: Path) -> Path:
    """The vault password, outside the fleet directory and readable by its owner only."""
    password = tmp_path / "secrets" / "rotterdam.vault-password"
    password.parent.mkdir(mode=0o700)
    password.write_text("a-test-password-never-used-in-production\n")
    password.chmod(0o600)
    return password


@pytest.fixture
def fleet(
    ssh_lab: SshLab, deploy_user: str, vault_password: Path, tmp_path: Path
) -> Iterator[Path]:
    fleet = rotterdam_copy(ssh_lab, tmp_path / "rotterdam")
    write_vault(fleet / "vault" / f"{MEMBER}.yml", {APP: SECRET}, vault_password)
    yield fleet
    kill_refapps(*[h.root for h in ssh_lab.hosts])


@pytest.fixture
def cli(
    fleet: Path,
    vault_password: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Cli:
    """``controlplane ...`` in-process on the copied fleet: (exit code, parsed --json)."""
    monkeypatch.setenv("CONTROLPLANE_VAULT_PASSWORD_FILE", str(vault_password))
    monkeypatch.setenv("CONTROLPLANE_FLEET", str(fleet))
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CONTROLPLANE_DATABASE_URL", f"sqlite:///{tmp_path / 'cp.db'}")
    monkeypatch.setenv("CONTROLPLANE_USER", "ops@rtm")

    def invoke(*args: str) -> tuple[int, Any]:
        code = cli_run([*args, "--json"])
        captured = capsys.readouterr()
        try:
            return code, json.loads(captured.out)
        except ValueError:
            return code, captured.out + captured.err

    return invoke


def live(lab: SshLab) -> list[tuple[int, str, bool]]:
    """(status, version, healthy) of the member's app on rtm-app-01 and rtm-app-02."""
    out = []
    for host in lab.hosts[:2]:
        code, body = http_get(host.address, PORT, "/version")
        health, _ = http_get(host.address, PORT, "/healthz")
        out.append((code, body["version"], health == 200))
    return out


def shown(runs: Any) -> str:
    """A failed command's runs in full (pytest would cut a nested repr short)."""
    return json.dumps(runs, indent=1, default=str) if not isinstance(runs, str) else runs


def releases(runs: Any) -> dict[str, tuple[str | None, str | None]]:
    [run] = runs
    assert run["status"] == "successful", shown(run)
    assert run["emergency_reason"] == EMERGENCY
    return {h["host"]: (h["release_before"], h["release_after"]) for h in run["hosts"]}


def test_rotterdam_example_deploys_upgrades_and_rolls_back_over_ssh(
    cli: Cli, ssh_lab: SshLab
) -> None:
    code, checked = cli("validate")
    assert code == 0, checked
    hosts = ["rtm-app-01.dc.sociaal-coop.nl", "rtm-app-02.dc.sociaal-coop.nl"]

    code, runs = cli("deploy", MEMBER, "--app", APP, "--version", "2.8.3", "--emergency", EMERGENCY)
    assert code == 0, shown(runs)
    assert releases(runs) == dict.fromkeys(hosts, (None, "2.8.3"))
    assert live(ssh_lab) == [(200, "2.8.3", True)] * 2
    # Through sudo as root: the app runs as the member's own user, and its config (with the
    # secret from the member's vault file) is readable by that user and root only.
    user = pwd.getpwnam(f"cp-{MEMBER}")
    for host in ssh_lab.hosts[:2]:
        app_dir = host.root / "opt/controlplane" / MEMBER / APP
        pid = read_pid(host.root / "run/controlplane" / MEMBER / f"{APP}.pid")
        assert pid is not None and os.stat(f"/proc/{pid}").st_uid == user.pw_uid
        config = app_dir / "releases/2.8.3/config.json"
        assert json.loads(config.read_text())["db_password"] == SECRET
        st = config.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, user.pw_gid, 0o640)

    code, runs = cli("deploy", MEMBER, "--app", APP, "--emergency", EMERGENCY)
    assert code == 0, shown(runs)
    assert releases(runs) == dict.fromkeys(hosts, ("2.8.3", "2.9.0"))  # the stack's version
    assert live(ssh_lab) == [(200, "2.9.0", True)] * 2

    code, runs = cli("rollback", MEMBER, "--app", APP, "--emergency", EMERGENCY)
    assert code == 0, shown(runs)
    assert releases(runs) == dict.fromkeys(hosts, ("2.9.0", "2.8.3"))
    assert live(ssh_lab) == [(200, "2.8.3", True)] * 2
    # Nothing of the other members or hosts was touched.
    for host in ssh_lab.hosts[2:]:
        assert not (host.root / "opt").exists()
