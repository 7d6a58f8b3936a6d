"""Preflight: key, known_hosts and vault files checked before Ansible starts, one line per
problem; `validate --connect` logs in to real sshd hosts with Fabric.

Most cases are fast checks of files in a tmp dir; the sshd cases are one test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko  # type: ignore[import-untyped]
import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret  # type: ignore[import-untyped]
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from controlplane.app import Context
from controlplane.cli import run
from controlplane.cli.root import exit_code_for
from controlplane.deploy.model import RunKind, RunSpec
from controlplane.deploy.options import PlaybookVars, RunOptions
from controlplane.deploy.plan import DeployRequest
from controlplane.errors import PreflightFailed, Unreachable
from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Capacity, ConnectionKind, Host, ProcessManager
from controlplane.preflight import (
    Problem,
    ProblemKind,
    RunPreflight,
    VaultFile,
    check_host_files,
    check_run,
    check_vault_files,
    judge_probe,
    probe_script,
    raise_for,
)
from controlplane.settings import load_settings
from tests.conftest import LAB, ssh_fleet
from tests.fleet_files import write_fleet
from tests.sshd import SshLab

CAP = Capacity(vcpu=4, ram_gib=8, disk_gib=50)  # type: ignore[arg-type]
PASSWORD = "correct horse battery staple"
SECRET = "db-password-that-must-never-show"


def public_key_line() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


def ssh_host(name: str = "srv-01", **fields: Any) -> Host:
    base: dict[str, Any] = {
        "address": "10.0.0.1",
        "capacity": CAP,
        "connection": ConnectionKind.SSH,
        "known_hosts_file": "known_hosts",
    }
    return Host(name=name, **{**base, **fields})


def lines(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


# -- key files ---------------------------------------------------------------------------------


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    """A fleet dir holding a known_hosts with srv-01's key on port 22."""
    d = tmp_path / "fleet"
    d.mkdir()
    (d / "known_hosts").write_text(f"10.0.0.1 {public_key_line()}\n")
    return d


def test_key_file_must_exist_be_a_file_and_be_private(fleet_dir: Path) -> None:
    host = ssh_host(private_key_file="keys/client_key")
    assert lines(check_host_files([host], fleet_dir)) == [
        "srv-01: key file keys/client_key missing"
    ]

    (fleet_dir / "keys" / "client_key").mkdir(parents=True)
    assert lines(check_host_files([host], fleet_dir)) == [
        "srv-01: key file keys/client_key is not a regular file"
    ]
    (fleet_dir / "keys" / "client_key").rmdir()
    key = fleet_dir / "keys" / "client_key"
    key.write_text("not really a key\n")
    key.chmod(0o644)
    assert lines(check_host_files([host], fleet_dir)) == [
        "srv-01: key file keys/client_key is readable by others (mode 644); chmod 600 it"
    ]
    key.chmod(0o620)
    assert lines(check_host_files([host], fleet_dir)) == [
        "srv-01: key file keys/client_key is writable by others (mode 620); chmod 600 it"
    ]
    key.chmod(0o600)
    assert check_host_files([host], fleet_dir) == []
    # A key outside the fleet dir is named by its absolute path.
    outside = ssh_host(private_key_file=str(fleet_dir.parent / "elsewhere"))
    assert lines(check_host_files([outside], fleet_dir)) == [
        f"srv-01: key file {fleet_dir.parent / 'elsewhere'} missing"
    ]


def test_local_hosts_need_no_key_or_known_hosts(fleet_dir: Path) -> None:
    local = Host(
        name="lab-1",
        address="127.0.10.1",
        capacity=CAP,
        connection=ConnectionKind.LOCAL,
        private_key_file="nowhere",
    )
    assert check_host_files([local], fleet_dir) == []


# -- known_hosts -------------------------------------------------------------------------------


def test_known_hosts_is_looked_up_by_address_and_port_plain_or_hashed(fleet_dir: Path) -> None:
    key = public_key_line()
    known = fleet_dir / "known_hosts"
    on_22 = ssh_host()
    on_2222 = ssh_host("srv-02", address="10.0.0.2", port=2222)
    hashed = ssh_host("srv-03", address="10.0.0.3", port=2200)
    by_name = ssh_host("srv-04", address="10.0.0.4")
    known.write_text(
        "# comment lines and blank lines are fine\n\n"
        f"10.0.0.1 {key}\n"
        f"[10.0.0.2]:2222 {key}\n"
        f"{paramiko.HostKeys.hash_host('[10.0.0.3]:2200')} {key}\n"
        # ssh looks a host up by the address it connects to, not the fleet's host name.
        f"srv-04 {key}\n"
    )
    assert check_host_files([on_22, on_2222, hashed], fleet_dir) == []
    assert lines(check_host_files([by_name], fleet_dir)) == [
        "srv-04: known_hosts file known_hosts holds no key for 10.0.0.4; "
        "add the host's key, verified out of band"
    ]
    # Port 22 and another port are different entries to ssh.
    moved = ssh_host(port=2022)
    assert "holds no key for [10.0.0.1]:2022" in lines(check_host_files([moved], fleet_dir))[0]
    known.unlink()
    assert lines(check_host_files([on_22], fleet_dir)) == [
        "srv-01: known_hosts file known_hosts missing"
    ]


# -- vault files -------------------------------------------------------------------------------


def encrypt(path: Path, text: str, password: str = PASSWORD) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    vault = VaultLib([("default", VaultSecret(password.encode()))])
    path.write_bytes(vault.encrypt(text))


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "vault-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def vault_problems(fleet_dir: Path, password: Path | None, *files: VaultFile) -> list[str]:
    found = lines(check_vault_files(list(files), password, fleet_dir))
    for line in found:
        assert SECRET not in line and PASSWORD not in line
    return found


def test_vault_files_must_exist_when_required_and_open_with_the_password(
    fleet_dir: Path, password_file: Path, tmp_path: Path
) -> None:
    path = fleet_dir / "vault" / "amsterdam.yml"
    required = VaultFile("amsterdam", path, required=True)
    optional = VaultFile("amsterdam", path, required=False)

    assert vault_problems(fleet_dir, password_file, required) == [
        "vault file vault/amsterdam.yml missing (member amsterdam: its deploys load their "
        "secrets from it)"
    ]
    assert vault_problems(fleet_dir, password_file, optional) == []

    path.parent.mkdir()
    path.write_text(f"cp_secrets: {{uitkering: {{db_password: {SECRET}}}}}\n")
    assert vault_problems(fleet_dir, password_file, optional) == [
        "vault file vault/amsterdam.yml is not encrypted; run ansible-vault encrypt on it"
    ]

    encrypt(path, f"cp_secrets: {{uitkering: {{db_password: {SECRET}}}}}\n")
    assert vault_problems(fleet_dir, password_file, required) == []
    assert vault_problems(fleet_dir, None, required) == [
        "vault password not configured (set CONTROLPLANE_VAULT_PASSWORD_FILE); "
        "needed for vault/amsterdam.yml"
    ]
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not the password\n")
    assert vault_problems(fleet_dir, wrong, required) == [
        f"vault file vault/amsterdam.yml does not decrypt with the vault password from {wrong} "
        "(CONTROLPLANE_VAULT_PASSWORD_FILE)"
    ]
    assert vault_problems(fleet_dir, tmp_path / "absent", required) == [
        f"vault password file {tmp_path / 'absent'} (CONTROLPLANE_VAULT_PASSWORD_FILE) missing"
    ]
    empty = tmp_path / "empty-password"
    empty.write_text("\n")
    assert vault_problems(fleet_dir, empty, required) == [
        f"vault password file {empty} (CONTROLPLANE_VAULT_PASSWORD_FILE) gives no usable "
        "password (empty, unreadable or a failing script)"
    ]
    # An executable password file is a script whose output is the password, as in Ansible.
    script = tmp_path / "password-script"
    script.write_text(f"#!/bin/sh\necho '{PASSWORD}'\n")
    script.chmod(0o700)
    assert vault_problems(fleet_dir, script, required) == []

    encrypt(path, "- a list, not the mapping include_vars needs\n")
    assert vault_problems(fleet_dir, password_file, required) == [
        "vault file vault/amsterdam.yml does not hold a YAML mapping once decrypted"
    ]


# -- a run's preflight, and what it raises -------------------------------------------------------


@pytest.fixture
def lab_copy(tmp_path: Path) -> Path:
    target = tmp_path / "lab"
    shutil.copytree(LAB, target)
    return target


def spec(kind: RunKind, member: str | None, hosts: tuple[str, ...], **options: Any) -> RunSpec:
    return RunSpec(
        kind=kind,
        playbook=f"{kind.value}.yml",
        started_by="test",
        member=member,
        app="uitkering" if kind in (RunKind.DEPLOY, RunKind.ROLLBACK) else None,
        version="1.1.0" if kind in (RunKind.DEPLOY, RunKind.ROLLBACK) else None,
        hosts=hosts,
        options=RunOptions(**options),
    )


def test_a_runs_preflight_checks_its_hosts_and_the_vault_files_it_reads(
    lab_copy: Path, sql: Any
) -> None:
    from controlplane.store.runs import RunStore

    fleet = load_fleet(lab_copy)
    password = lab_copy / "vault-password"
    store = RunStore(sql)

    def problems(s: RunSpec, password_file: Path | None = password) -> list[str]:
        return lines(check_run(store.create(s), fleet, lab_copy, password_file))

    deploy = spec(RunKind.DEPLOY, "utrecht", ("lab-2",))
    assert problems(deploy) == []
    assert problems(deploy, None) == [
        "vault password not configured (set CONTROLPLANE_VAULT_PASSWORD_FILE); "
        "needed for vault/utrecht.yml"
    ]
    (lab_copy / "vault" / "utrecht.yml").unlink()
    assert problems(deploy) == [
        "vault file vault/utrecht.yml missing (member utrecht: its deploys load their "
        "secrets from it)"
    ]
    # A rollback only switches releases already on the host: it reads no vault file.
    assert problems(spec(RunKind.ROLLBACK, "utrecht", ("lab-2",))) == []
    # A drift check compares secrets only for the vault files that exist.
    drift = spec(
        RunKind.DRIFT,
        None,
        ("lab-1", "lab-2"),
        vars=PlaybookVars(vault_dir=str(lab_copy / "vault")),
    )
    assert problems(drift) == []
    assert problems(drift, None)[0].startswith("vault password not configured")
    assert problems(spec(RunKind.PATCH, None, ("lab-9",))) == [
        "lab-9: not in the fleet's hosts.yml any more"
    ]


def test_problems_raise_preflight_failed_exit_2_or_unreachable_exit_4() -> None:
    raise_for([])
    config = Problem("srv-01", "key file keys/id missing")
    down = Problem("srv-02", "unreachable: SSH to 10.0.0.2:22 failed", ProblemKind.UNREACHABLE)
    with pytest.raises(PreflightFailed) as failed:
        raise_for([config, down])
    assert failed.value.problems == [
        "srv-01: key file keys/id missing",
        "srv-02: unreachable: SSH to 10.0.0.2:22 failed",
    ]
    assert exit_code_for(failed.value) == 2
    with pytest.raises(Unreachable) as unreachable:
        raise_for([down])
    assert exit_code_for(unreachable.value) == 4


def test_every_run_of_the_engine_checks_before_its_first_play(
    lab_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """app.py wires the hook: a deploy whose member has no vault file never reaches Ansible."""
    (lab_copy / "vault" / "utrecht.yml").unlink()
    ctx = Context(load_settings(fleet=lab_copy, data_dir=tmp_path / "var"))
    started: list[object] = []
    engine = ctx.deployer
    assert isinstance(engine.preflight, RunPreflight)
    monkeypatch.setattr(engine, "runner", lambda *a, **kw: started.append(a))
    [first, *_] = ctx.planner.plan_deploy(DeployRequest("utrecht"))
    final = engine.execute(ctx.runs.create(first, node=engine.node).id)
    ctx.close()
    assert started == []
    assert final.status.value == "failed"
    assert "vault file vault/utrecht.yml missing" in (final.error or "")


# -- paths in hosts.yml are the fleet directory's ------------------------------------------------


def make_ssh_lab_host(fleet: Path, key_mode: int = 0o600) -> None:
    """Turn the lab copy's lab-4 into an SSH host with relative key and known_hosts paths."""
    hosts = fleet / "hosts.yml"
    doc = yaml.safe_load(hosts.read_text())
    [lab4] = [h for h in doc["hosts"] if h["name"] == "lab-4"]
    lab4.update(
        connection="ssh",
        private_key_file="keys/client_key",
        known_hosts_file="known_hosts",
    )
    hosts.write_text(yaml.safe_dump(doc, sort_keys=False))
    (fleet / "keys").mkdir()
    (fleet / "keys" / "client_key").write_text("key\n")
    (fleet / "keys" / "client_key").chmod(key_mode)
    (fleet / "known_hosts").write_text(f"127.0.10.4 {public_key_line()}\n")


def test_key_and_known_hosts_paths_are_read_from_the_fleet_dir_whatever_the_cwd(
    lab_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    make_ssh_lab_host(lab_copy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    host = load_fleet(lab_copy).host("lab-4")
    assert host.private_key_file == str(lab_copy / "keys" / "client_key")
    assert host.known_hosts_file == str(lab_copy / "known_hosts")
    assert run(["validate", "--fleet", str(lab_copy)]) == 0
    assert "preflight: 4 hosts ok" in capsys.readouterr().out
    # A relative --fleet is taken from the cwd; the paths inside still from the fleet.
    monkeypatch.chdir(tmp_path)
    assert run(["validate", "--fleet", "lab"]) == 0
    capsys.readouterr()

    (lab_copy / "keys" / "client_key").chmod(0o644)
    (lab_copy / "vault" / "den-haag.yml").write_text("cp_secrets: {}\n")
    assert run(["validate", "--fleet", "lab"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: vault file vault/den-haag.yml is not encrypted; run ansible-vault encrypt on it",
        "error: lab-4: key file keys/client_key is readable by others (mode 644); chmod 600 it",
    ]


# -- the probe's script and what is read from its output ----------------------------------------


def test_probe_script_runs_under_sh_and_reports_this_python() -> None:
    out = subprocess.run(
        ["sh", "-c", probe_script(sys.executable)], capture_output=True, text=True, check=True
    ).stdout
    host = ssh_host()
    check, problems = judge_probe(host, sys.executable, out)
    assert problems == []
    assert check.reached and check.python == sys.executable
    assert check.python_version == ".".join(str(n) for n in sys.version_info[:3])


@pytest.mark.parametrize(
    ("manager", "output", "expected"),
    [
        ("pidfile", "python_version=3.11.2\nsystemctl=no\nsystemd_booted=no\n", []),
        ("systemd", "python_version=3.11.2\nsystemctl=yes\nsystemd_booted=yes\n", []),
        (
            "pidfile",
            "python_version=\npython3=/usr/local/bin/python3\n",
            [
                "srv-01: python interpreter /usr/bin/python3 not found; python3 is "
                "/usr/local/bin/python3: set python_interpreter in hosts.yml"
            ],
        ),
        (
            "pidfile",
            "python_version=\npython3=\n",
            [
                "srv-01: python interpreter /usr/bin/python3 not found; install Python 3 or "
                "set python_interpreter in hosts.yml"
            ],
        ),
        (
            "pidfile",
            "python_version=3.6.8\n",
            ["srv-01: python /usr/bin/python3 is 3.6.8; Ansible needs 3.8 or newer"],
        ),
        (
            "systemd",
            "python_version=3.11.2\nsystemctl=yes\nsystemd_booted=no\n",
            [
                "srv-01: process_manager is systemd, but systemd is not running there "
                "(no /run/systemd/system); use process_manager: pidfile"
            ],
        ),
        (
            "systemd",
            "python_version=3.11.2\nsystemctl=no\nsystemd_booted=no\n",
            ["srv-01: process_manager is systemd, but systemctl --version does not answer there"],
        ),
    ],
)
def test_probe_output_is_judged(manager: str, output: str, expected: list[str]) -> None:
    host = ssh_host(process_manager=ProcessManager(manager))
    _, problems = judge_probe(host, "/usr/bin/python3", output)
    assert lines(problems) == expected


# -- validate --connect against real sshd hosts ---------------------------------------------------


@pytest.fixture
def ssh_fleet_dir(
    ssh_lab: SshLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    yield write_fleet(ssh_fleet(ssh_lab, hosts=2), tmp_path / "fleet", vault_from=LAB)
    ssh_lab.ensure_running()


def edit_host(fleet: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = fleet / "hosts.yml"
    doc = yaml.safe_load(path.read_text())
    change(next(h for h in doc["hosts"] if h["name"] == name))
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_validate_connect_on_sshd_hosts(
    ssh_lab: SshLab, ssh_fleet_dir: Path, tmp_path: Path, capsys: Any
) -> None:
    fleet = ssh_fleet_dir
    host2 = ssh_lab.hosts[1]

    def validate(*extra: str) -> tuple[int, str, str]:
        code = run(["validate", "--connect", "--fleet", str(fleet), *extra])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, err = validate()
    assert (code, err) == (0, "")
    assert "host1: ssh ok, python " in out and "host2: ssh ok, python " in out
    assert "preflight: 2 hosts ok" in out

    # One host down: exit 4, naming it; the other is fine.
    host2.stop()
    code, out, err = validate("--json")
    host2.start()
    doc = yaml.safe_load(out)
    assert code == 4 and doc["status"] == "unreachable", out
    assert [p["message"] for p in doc["preflight"]["problems"]] == [
        f"host2: unreachable: SSH to {host2.address}:{host2.port} failed (connection refused)"
    ]

    # The known_hosts file (now a relative path, from the fleet dir) lacks host2.
    (fleet / "known_hosts").write_text(ssh_lab.known_hosts.read_text().splitlines()[0] + "\n")
    edit_host(fleet, "host2", lambda h: h.update(known_hosts_file="known_hosts"))
    code, out, err = validate()
    assert code == 2
    assert err.splitlines() == [
        f"error: host2: known_hosts file known_hosts holds no key for "
        f"[{host2.address}]:{host2.port}; add the host's key, verified out of band"
    ]
    edit_host(fleet, "host2", lambda h: h.update(known_hosts_file=str(ssh_lab.known_hosts)))

    # A key file that is not there; and a host declared systemd (this machine runs none).
    edit_host(fleet, "host1", lambda h: h.update(private_key_file="keys/deploy"))
    edit_host(fleet, "host2", lambda h: h.update(process_manager="systemd"))
    code, out, err = validate()
    assert code == 2
    expected = ["error: host1: key file keys/deploy missing"]
    if not Path("/run/systemd/system").is_dir():
        expected.append(
            "error: host2: process_manager is systemd, but systemd is not running there "
            "(no /run/systemd/system); use process_manager: pidfile"
        )
    assert err.splitlines() == expected
    # Nothing ran: no run record, no ansible artifacts.
    assert not (tmp_path / "var" / "runs").exists()
    assert not (tmp_path / "var" / "controlplane.db").exists()
