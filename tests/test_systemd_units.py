"""The systemd process manager: the unit the playbooks install, and the move of a host from
the pidfile manager to systemd.

This machine has no running systemd (PID 1 is not systemd in the test container), so a unit
is never started here. What can be checked is: the unit ``cp_release`` renders passes
``systemd-analyze verify`` and runs the app as the member's user; and the real
``process.yml`` in systemd mode stops an app the pidfile manager started before it gets to
the unit, leaving the port free.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from controlplane.deploy.runner import ansible_bin_dir
from controlplane.settings import PLAYBOOKS_DIR
from tests.conftest import missing, remote_python
from tests.refapp_fixtures import REFAPP, kill_refapps, read_pid
from tests.sshd import free_port

ROLE = PLAYBOOKS_DIR / "roles" / "cp_release"


def systemd_analyze() -> str:
    """The verifier; a machine without it fails in CI and skips elsewhere."""
    found = shutil.which("systemd-analyze")
    if found is None:
        missing("systemd-analyze is not installed (Debian package systemd)")
    assert found is not None
    return found


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def render_unit(cp_root: str, member: str, app: str, *, isolated: bool) -> str:
    """app.service.j2 rendered by Ansible's templar with the role's own vars."""
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    variables: dict[str, Any] = {
        k: trust_as_template(v) if isinstance(v, str) else v for k, v in role_vars.items()
    }
    variables.update(
        cp_root=cp_root,
        cp_address="10.31.0.11",
        cp_release_instance={"member": member, "app": app, "port": 9100, "version": "3.4.1"},
        cp_release_isolated=isolated,
        ansible_python_interpreter=remote_python(),
        ansible_managed="Ansible managed",
    )
    templar = Templar(loader=DataLoader(), variables=variables)
    source = (ROLE / "templates" / "app.service.j2").read_text()
    return str(templar.template(trust_as_template(source)))


def service_lines(unit: str) -> dict[str, str]:
    """The [Service] section's settings (one value each in this unit)."""
    section, out = "", {}
    for line in unit.splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key] = value
    return out


@pytest.mark.parametrize(
    ("member", "user", "isolated"),
    [
        ("amsterdam", "cp-amsterdam", True),
        # The template never depends on who the play runs as: no User= would mean root.
        ("den-haag", "cp-den-haag", False),
        # A slug too long for a Linux user name gets the shortened, hashed name.
        ("sudwest-fryslan-sociaal-werkbedrijf", "cp-sudwest-fryslan-soci-", True),
    ],
)
def test_production_unit_passes_systemd_analyze_verify_and_runs_as_the_member(
    tmp_path: Path, member: str, user: str, isolated: bool
) -> None:
    text = render_unit("/", member, "uitkering", isolated=isolated)
    unit = tmp_path / f"cp-{member}-uitkering.service"
    unit.write_text(text)

    result = verify(unit)

    assert result.returncode == 0, result.stderr
    service = service_lines(text)
    # Warnings (an unknown key, a bad user name) leave the exit code at 0: none allowed,
    # but one. systemd's strict user names end at 31 characters; the playbooks' names may
    # use the 32 Linux allows, which systemd accepts and says so.
    accepted = f"Accepting user/group name '{service['User']}', which does not match strict"
    warnings = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not (len(service["User"]) == 32 and line.startswith(accepted))
    ]
    assert warnings == [], result.stderr
    assert service["User"].startswith(user) and service["User"] == service["Group"]
    assert len(service["User"]) <= 32
    current = f"/opt/controlplane/{member}/uitkering/current"
    assert service["ExecStart"] == (
        f"{remote_python()} {current}/refapp.py serve --config {current}/config.json"
    )


def test_verify_catches_a_unit_that_could_not_start(tmp_path: Path) -> None:
    """The check above can fail: a unit whose interpreter is missing is refused."""
    text = render_unit("/", "amsterdam", "uitkering", isolated=True)
    unit = tmp_path / "cp-amsterdam-uitkering.service"
    unit.write_text(text.replace(f"ExecStart={remote_python()}", "ExecStart=/no/such/python3"))

    result = verify(unit)

    assert result.returncode != 0
    assert "/no/such/python3" in result.stderr


# -- pidfile -> systemd ------------------------------------------------------------------------

MEMBER, APP, VERSION = "amsterdam", "uitkering", "3.4.1"
STOP_TASK = "Stop the app the pidfile manager started before this host moved to systemd"
SYSTEMD_TASK = "Ensure the app service runs the live release (systemd)"


def install_release(root: Path, port: int) -> tuple[Path, Path]:
    """A release tree under ``root`` as deploy.yml leaves it; (config, pidfile)."""
    app_dir = root / "opt/controlplane" / MEMBER / APP
    release = app_dir / "releases" / VERSION
    release.mkdir(parents=True)
    shutil.copy(REFAPP, release / "refapp.py")
    config = {"member": MEMBER, "app": APP, "version": VERSION, "address": "127.0.0.1"}
    (release / "config.json").write_text(json.dumps({**config, "port": port}))
    (app_dir / "current").symlink_to(f"releases/{VERSION}")
    (root / "etc/systemd/system").mkdir(parents=True)
    return app_dir / "current" / "config.json", root / "run/controlplane" / MEMBER / f"{APP}.pid"


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def is_refapp(pid: int) -> bool:
    """A live reference app (a zombie's cmdline is empty; a gone pid has none)."""
    try:
        return b"refapp.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.fixture
def host_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    root.mkdir()
    yield root
    kill_refapps(root)


def test_moving_to_systemd_stops_the_pidfile_app_before_the_unit_starts(
    host_root: Path, tmp_path: Path
) -> None:
    port = free_port("127.0.0.1")
    config, pidfile = install_release(host_root, port)
    python = remote_python()
    started = subprocess.run(
        [
            python,
            str(config.parent / "refapp.py"),
            "ensure",
            *("--config", str(config), "--pidfile", str(pidfile)),
            *("--log", str(tmp_path / "app.log")),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert '"action": "started"' in started.stdout
    old_pid = read_pid(pidfile)
    assert old_pid is not None and is_refapp(old_pid) and not port_is_free(port)

    # The role's process.yml as deploy.yml runs it, on a host whose fleet entry now says
    # process_manager: systemd (a local connection, rooted in host_root).
    play = tmp_path / "play.yml"
    play.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "vars": {
                        "ansible_python_interpreter": python,
                        "cp_root": str(host_root),
                        "cp_address": "127.0.0.1",
                        "cp_process_manager": "systemd",
                        "cp_release_instance": {
                            "member": MEMBER,
                            "app": APP,
                            "port": port,
                            "version": VERSION,
                        },
                        "cp_release_restart": False,
                    },
                    "tasks": [
                        {
                            "name": "Run the live release",
                            "ansible.builtin.include_role": {
                                "name": "cp_release",
                                "tasks_from": "process",
                            },
                        }
                    ],
                }
            ],
            sort_keys=False,
        )
    )
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(PLAYBOOKS_DIR / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
    }
    proc = subprocess.run(
        [str(ansible_bin_dir() / "ansible-playbook"), "-i", "localhost,", str(play)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr

    # The pidfile app is gone and its port free before the unit is touched...
    stop_at = output.index(f"TASK [cp_release : {STOP_TASK}]")
    systemd_at = output.index(f"TASK [cp_release : {SYSTEMD_TASK}]")
    assert stop_at < systemd_at
    assert output[stop_at:systemd_at].count("changed: [localhost]") == 2, output  # stop, unit
    assert not is_refapp(old_pid)
    assert not pidfile.exists() and not Path(f"{pidfile}.state").exists()
    assert port_is_free(port)
    # ...the unit Ansible wrote passes verify and runs the app as the member's user...
    unit = host_root / "etc/systemd/system" / f"cp-{MEMBER}-{APP}.service"
    result = verify(unit)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    assert service_lines(unit.read_text())["User"] == f"cp-{MEMBER}"
    # ...and only starting it fails, because no systemd runs here (nor knows this root).
    assert proc.returncode == 2, output
    assert "fatal: [localhost]" in output[systemd_at:], output
    assert "failed=1" in output


def test_stop_clears_a_pidfile_whose_process_is_not_the_app(tmp_path: Path) -> None:
    """After a crash the pid may belong to another process by now: it is left alone, and
    the leftover files go, so the systemd step (run only while a pidfile exists) stops."""
    pidfile = tmp_path / "uitkering.pid"
    other = subprocess.Popen(["sleep", "60"])
    try:
        pidfile.write_text(f"{other.pid}\n")
        Path(f"{pidfile}.state").write_text("{}")

        result = subprocess.run(
            [remote_python(), str(REFAPP), "stop", "--pidfile", str(pidfile)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )

        assert json.loads(result.stdout) == {"action": "not-running"}
        assert other.poll() is None  # never signalled
        assert not pidfile.exists() and not Path(f"{pidfile}.state").exists()
    finally:
        other.kill()
        other.wait()
