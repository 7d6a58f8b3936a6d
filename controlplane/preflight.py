"""Preflight: what a run needs, checked before Ansible starts, one line per problem.

A newcomer's deploy used to fail deep inside an Ansible artifact on a missing vault file, an
unconfigured vault password, a key path or a host without systemd. These checks find such
problems first and name the host and the file or setting:

* file checks (pure, no network): each SSH host's key file exists, is a regular file and is
  private (ssh refuses a key others may read); its known_hosts file holds the host's key
  under the name ssh looks up (``addr``, or ``[addr]:port`` off port 22; hashed entries too);
  each member vault file being used exists, is encrypted and decrypts with the configured
  password (Ansible's own vault code; nothing of its content is ever shown);
* the SSH probe (``validate --connect``): log in to every SSH host in parallel with Fabric,
  strictly against the fleet's known_hosts file and with only the fleet's key, and check the
  Python interpreter Ansible will use and, for ``systemd`` hosts, that systemd runs.

Vault files: a deploy always loads ``<fleet>/vault/<member>.yml`` (the deploy playbook
refuses to run without it, even for apps without secrets), so a deploy and
``validate --connect`` report a member with a stack but no vault file, whether or not other
members have one. Plain ``validate`` checks only the vault files that are there, so a fleet
still being prepared (no secrets yet) validates.

Exit codes (at the CLI edge): a configuration problem is ``PreflightFailed`` (2); when the
only problems are unreachable hosts, ``Unreachable`` (4), as for a run that failed only
because its hosts could not be reached. Runs check files only: connecting to every host
before every run would cost seconds, and Ansible reports an unreachable host itself.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from controlplane.access.policy import Action, Principal, authorize
from controlplane.deploy.model import Run, RunKind
from controlplane.errors import PreflightFailed, Unreachable
from controlplane.fleet.model import ConnectionKind, Fleet, Host, ProcessManager
from controlplane.fleet.vault import (
    PASSWORD_SETTING,
    VaultNotMapping,
    VaultUnusable,
    open_vault,
    vault_file,
)
from controlplane.schemas.preflight import PreflightHostOut, PreflightOut, PreflightProblemOut

if TYPE_CHECKING:
    from controlplane.app import Context

CONNECT_TIMEOUT = 5.0
# Paramiko logs each failed handshake with a traceback from its transport thread; the probe
# reports the failure as one line, so those records go nowhere unless logging is set up.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
# ansible-core 2.17-2.19 run their modules on Python 3.8 or newer on the managed host.
MIN_REMOTE_PYTHON = (3, 8)


class ProblemKind(Enum):
    CONFIG = "config"
    UNREACHABLE = "unreachable"


Status = Literal["ok", "failed", "unreachable"]


@dataclass(frozen=True)
class Problem:
    """One thing to fix. ``host`` is None for what is not a host's (a vault file)."""

    host: str | None
    message: str
    kind: ProblemKind = ProblemKind.CONFIG

    def __str__(self) -> str:
        return f"{self.host}: {self.message}" if self.host else self.message


@dataclass(frozen=True)
class HostCheck:
    """What the SSH probe learned about one host (None: not asked)."""

    host: str
    connection: str
    process_manager: str
    reached: bool | None = None
    python: str | None = None
    python_version: str | None = None


@dataclass
class Report:
    hosts: list[HostCheck] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def status(self) -> Status:
        if not self.problems:
            return "ok"
        if all(p.kind is ProblemKind.UNREACHABLE for p in self.problems):
            return "unreachable"
        return "failed"


def shown(path: Path | str, fleet_dir: Path) -> str:
    """A path as the user wrote it: relative to the fleet directory when inside it."""
    p = Path(path)
    try:
        return str(p.relative_to(fleet_dir))
    except ValueError:
        return str(p)


def raise_for(problems: Sequence[Problem]) -> None:
    """``PreflightFailed`` for any configuration problem, else ``Unreachable`` when hosts
    could not be reached; nothing when there are no problems."""
    if not problems:
        return
    lines = [str(p) for p in problems]
    if all(p.kind is ProblemKind.UNREACHABLE for p in problems):
        raise Unreachable("; ".join(lines))
    raise PreflightFailed(lines)


# -- file checks (pure) ------------------------------------------------------------------------


def ssh_hosts(hosts: Iterable[Host]) -> list[Host]:
    return [h for h in hosts if h.connection is ConnectionKind.SSH]


def check_key_file(host: Host, fleet_dir: Path) -> list[Problem]:
    """The host's key file is there, a regular file, and private, as ssh demands."""
    if host.connection is not ConnectionKind.SSH or host.private_key_file is None:
        return []
    path = fleet_dir / host.private_key_file  # already absolute once loaded
    name = shown(path, fleet_dir)
    try:
        st = path.stat()
    except FileNotFoundError:
        return [Problem(host.name, f"key file {name} missing")]
    except OSError as exc:
        return [Problem(host.name, f"key file {name} cannot be read ({exc.strerror})")]
    if not stat.S_ISREG(st.st_mode):
        return [Problem(host.name, f"key file {name} is not a regular file")]
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        how = "readable" if mode & 0o044 else "writable"
        return [
            Problem(host.name, f"key file {name} is {how} by others (mode {mode:o}); chmod 600 it")
        ]
    if not os.access(path, os.R_OK):
        return [Problem(host.name, f"key file {name} is not readable by this user")]
    return []


def known_hosts_name(host: Host) -> str:
    """The name ssh looks the host key up under: the address, bracketed with a port off 22."""
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


def check_known_hosts(host: Host, fleet_dir: Path) -> list[Problem]:
    """The host's known_hosts file holds a key for it (plain or hashed entry)."""
    if host.connection is not ConnectionKind.SSH:
        return []
    if host.known_hosts_file is None:  # the model refuses this already
        return [Problem(host.name, "no known_hosts_file in hosts.yml")]
    import paramiko  # type: ignore[import-untyped]  # only SSH fleets pay for the import

    path = fleet_dir / host.known_hosts_file
    name = shown(path, fleet_dir)
    if not path.is_file():
        return [Problem(host.name, f"known_hosts file {name} missing")]
    keys = paramiko.HostKeys()
    try:
        keys.load(str(path))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        return [Problem(host.name, f"known_hosts file {name} cannot be read ({reason})")]
    wanted = known_hosts_name(host)
    if keys.lookup(wanted) is None:
        return [
            Problem(
                host.name,
                f"known_hosts file {name} holds no key for {wanted}; "
                "add the host's key, verified out of band",
            )
        ]
    return []


def check_host_files(hosts: Iterable[Host], fleet_dir: Path) -> list[Problem]:
    """Key and known_hosts files of every SSH host; ``local`` hosts need neither."""
    problems: list[Problem] = []
    for host in ssh_hosts(hosts):
        problems += check_key_file(host, fleet_dir)
        problems += check_known_hosts(host, fleet_dir)
    return problems


@dataclass(frozen=True)
class VaultFile:
    member: str
    path: Path
    required: bool


def check_vault_files(
    files: Sequence[VaultFile], password_file: Path | None, fleet_dir: Path
) -> list[Problem]:
    """Each required file exists; each present one is encrypted and opens with the password.

    Nothing read from a vault file or the password file reaches a message."""
    problems: list[Problem] = []
    present: list[VaultFile] = []
    for vf in files:
        name = shown(vf.path, fleet_dir)
        if not vf.path.exists():
            if vf.required:
                problems.append(
                    Problem(
                        None,
                        f"vault file {name} missing (member {vf.member}: its deploys load "
                        "their secrets from it)",
                    )
                )
        elif not vf.path.is_file():
            problems.append(Problem(None, f"vault file {name} is not a regular file"))
        else:
            present.append(vf)
    if not present:
        return problems

    from ansible.parsing.vault import is_encrypted  # type: ignore[import-untyped]

    encrypted: list[tuple[VaultFile, bytes]] = []
    for vf in present:
        name = shown(vf.path, fleet_dir)
        try:
            data = vf.path.read_bytes()
        except OSError as exc:
            problems.append(Problem(None, f"vault file {name} cannot be read ({exc.strerror})"))
            continue
        if not is_encrypted(data):
            problems.append(
                Problem(
                    None, f"vault file {name} is not encrypted; run ansible-vault encrypt on it"
                )
            )
            continue
        encrypted.append((vf, data))
    if not encrypted:
        return problems
    if password_file is None:
        names = ", ".join(shown(vf.path, fleet_dir) for vf, _ in encrypted)
        problems.append(
            Problem(
                None, f"vault password not configured (set {PASSWORD_SETTING}); needed for {names}"
            )
        )
        return problems
    try:
        vault = open_vault(password_file)
    except VaultUnusable as exc:
        where = f"vault password file {password_file} ({PASSWORD_SETTING})"
        problems.append(Problem(None, f"{where} {exc}"))
        return problems
    for vf, data in encrypted:
        name = shown(vf.path, fleet_dir)
        try:
            vault.mapping(data)
        except VaultNotMapping:
            problems.append(
                Problem(None, f"vault file {name} does not hold a YAML mapping once decrypted")
            )
        except VaultUnusable:
            problems.append(
                Problem(
                    None,
                    f"vault file {name} does not decrypt with the vault password from "
                    f"{password_file} ({PASSWORD_SETTING})",
                )
            )
    return problems


# -- what a run, or the whole fleet, needs --------------------------------------------------


def run_vault_files(run: Run, fleet: Fleet, fleet_dir: Path) -> list[VaultFile]:
    """The vault files a run's playbook reads: a deploy's member's (required); a drift
    check's, for each member on its hosts, when present (it compares the secret then)."""
    if run.kind is RunKind.DEPLOY and run.member is not None:
        return [VaultFile(run.member, vault_file(fleet_dir, run.member), required=True)]
    if run.kind is RunKind.DRIFT and run.options.vars.vault_dir is not None:
        directory = Path(run.options.vars.vault_dir)
        hosts = set(run.hosts)
        members = sorted({i.member for i in fleet.instances() if i.host in hosts})
        return [VaultFile(m, directory / f"{m}.yml", required=False) for m in members]
    return []


def check_run(run: Run, fleet: Fleet, fleet_dir: Path, password_file: Path | None) -> list[Problem]:
    """The file checks for one run: its hosts' key and known_hosts files, and its vault files."""
    hosts: list[Host] = []
    problems: list[Problem] = []
    by_name = {h.name: h for h in fleet.hosts}
    for name in run.hosts:
        if name in by_name:
            hosts.append(by_name[name])
        else:
            problems.append(Problem(name, "not in the fleet's hosts.yml any more"))
    problems += check_host_files(hosts, fleet_dir)
    problems += check_vault_files(run_vault_files(run, fleet, fleet_dir), password_file, fleet_dir)
    return problems


@dataclass(frozen=True)
class RunPreflight:
    """The engine's preflight hook: raises ``PreflightFailed`` before a run's first play."""

    fleet: Fleet
    fleet_dir: Path
    password_file: Path | None

    def __call__(self, run: Run) -> None:
        raise_for(check_run(run, self.fleet, self.fleet_dir, self.password_file))


def fleet_vault_files(fleet: Fleet, fleet_dir: Path, *, require: bool) -> list[VaultFile]:
    """Every member's vault file; members with a stack need one when ``require``."""
    deploying = {s.member for s in fleet.stacks if s.apps}
    return [
        VaultFile(m.slug, vault_file(fleet_dir, m.slug), required=require and m.slug in deploying)
        for m in fleet.members
    ]


def check_fleet(
    fleet: Fleet,
    fleet_dir: Path,
    password_file: Path | None,
    *,
    connect: bool,
    remote_python: str = "/usr/bin/python3",
    timeout: float = CONNECT_TIMEOUT,
) -> Report:
    """Every host's files and every member's vault file; with ``connect``, also log in to
    each SSH host whose files passed and check its interpreter and process manager."""
    report = Report()
    report.problems += check_vault_files(
        fleet_vault_files(fleet, fleet_dir, require=connect), password_file, fleet_dir
    )
    file_problems = check_host_files(fleet.hosts, fleet_dir)
    report.problems += file_problems
    blocked = {p.host for p in file_problems}
    # A host whose key or known_hosts is wrong would only fail again, less clearly.
    to_probe = [h for h in ssh_hosts(fleet.hosts) if connect and h.name not in blocked]
    outputs = probe(to_probe, remote_python, fleet_dir, timeout) if to_probe else {}
    for host in fleet.hosts:
        base = HostCheck(host.name, host.connection.value, host.process_manager.value)
        if host.name not in outputs:
            report.hosts.append(base)
            continue
        output, problem = outputs[host.name]
        if problem is not None:
            # A refused key or login still means the host answered.
            report.hosts.append(replace(base, reached=problem.kind is ProblemKind.CONFIG))
            report.problems.append(problem)
            continue
        check, problems = judge_probe(host, interpreter(host, remote_python), output or "")
        report.hosts.append(check)
        report.problems += problems
    return report


# -- the SSH probe ---------------------------------------------------------------------------


def interpreter(host: Host, remote_python: str) -> str:
    """The interpreter Ansible will run modules with on ``host`` (as the inventory says)."""
    return host.python_interpreter or remote_python


def probe_script(python: str) -> str:
    """A POSIX sh script printing ``key=value`` lines that ``judge_probe`` reads."""
    quoted = shlex.quote(python)
    version = "import sys; print('%d.%d.%d' % sys.version_info[:3])"
    return "\n".join(
        [
            f"if [ -x {quoted} ]; then",
            f"  echo python_version=$({quoted} -c {shlex.quote(version)} 2>/dev/null)",
            "else echo python_version=; fi",
            "echo python3=$(command -v python3 2>/dev/null)",
            "if systemctl --version >/dev/null 2>&1; then echo systemctl=yes;"
            " else echo systemctl=no; fi",
            "if [ -d /run/systemd/system ]; then echo systemd_booted=yes;"
            " else echo systemd_booted=no; fi",
        ]
    )


def judge_probe(host: Host, python: str, output: str) -> tuple[HostCheck, list[Problem]]:
    """Read the probe script's output for ``host``: the interpreter answers with a Python
    new enough for Ansible, and a ``systemd`` host runs systemd."""
    facts: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            facts[key.strip()] = value.strip()
    problems: list[Problem] = []
    version = facts.get("python_version") or None
    if version is None:
        elsewhere = facts.get("python3")
        hint = (
            f"python3 is {elsewhere}: set python_interpreter in hosts.yml"
            if elsewhere and elsewhere != python
            else "install Python 3 or set python_interpreter in hosts.yml"
        )
        problems.append(Problem(host.name, f"python interpreter {python} not found; {hint}"))
    else:
        parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if len(parts) == 2 and parts < MIN_REMOTE_PYTHON:
            need = ".".join(str(p) for p in MIN_REMOTE_PYTHON)
            problems.append(
                Problem(host.name, f"python {python} is {version}; Ansible needs {need} or newer")
            )
    if host.process_manager is ProcessManager.SYSTEMD:
        if facts.get("systemctl") != "yes":
            problems.append(
                Problem(
                    host.name,
                    "process_manager is systemd, but systemctl --version does not answer there",
                )
            )
        elif facts.get("systemd_booted") != "yes":
            problems.append(
                Problem(
                    host.name,
                    "process_manager is systemd, but systemd is not running there "
                    "(no /run/systemd/system); use process_manager: pidfile",
                )
            )
    check = HostCheck(
        host.name,
        host.connection.value,
        host.process_manager.value,
        reached=True,
        python=python,
        python_version=version,
    )
    return check, problems


def probe(
    hosts: Sequence[Host], remote_python: str, fleet_dir: Path, timeout: float = CONNECT_TIMEOUT
) -> dict[str, tuple[str | None, Problem | None]]:
    """Run the probe script on every host at once: its output, or the problem that kept it
    from running (unreachable, or refused: host key, login)."""
    with ThreadPoolExecutor(max_workers=min(len(hosts), 16) or 1) as pool:
        futures = {
            h.name: pool.submit(
                _probe_one, h, probe_script(interpreter(h, remote_python)), fleet_dir, timeout
            )
            for h in hosts
        }
        return {name: f.result() for name, f in futures.items()}


def _probe_one(
    host: Host, script: str, fleet_dir: Path, timeout: float
) -> tuple[str | None, Problem | None]:
    import paramiko
    from fabric import Config, Connection
    from invoke.exceptions import CommandTimedOut

    where = f"{host.address}:{host.port}"
    kwargs: dict[str, Any] = {
        "banner_timeout": timeout,
        "auth_timeout": timeout,
        "channel_timeout": timeout,
    }
    key_file = str(fleet_dir / host.private_key_file) if host.private_key_file else None
    if key_file:
        # Only the fleet's key: a key in an agent or ~/.ssh must not hide a wrong one.
        kwargs.update(key_filename=[key_file], look_for_keys=False, allow_agent=False)
    # No ssh_config or Fabric config files: the fleet alone says how to reach the host.
    config = Config(lazy=True, ssh_config=paramiko.SSHConfig())
    conn = Connection(
        host.address,
        user=host.user,
        port=host.port,
        config=config,
        connect_timeout=timeout,
        connect_kwargs=kwargs,
    )
    # Fabric trusts unknown hosts by default; this probe checks keys like every run does.
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if host.known_hosts_file:
        conn.client.get_host_keys().load(str(fleet_dir / host.known_hosts_file))
    unreachable = ProblemKind.UNREACHABLE
    try:
        result = conn.run(script, hide=True, warn=True, in_stream=False, timeout=timeout)
        return str(result.stdout), None
    except paramiko.BadHostKeyException:
        return None, Problem(
            host.name, f"host key at {where} does not match its known_hosts file (refused)"
        )
    except paramiko.AuthenticationException:
        key = f"key file {shown(key_file, fleet_dir)}" if key_file else "the default keys"
        user = host.user or "the local user"
        return None, Problem(host.name, f"SSH login as {user} refused with {key}")
    except CommandTimedOut:
        return None, Problem(host.name, f"unreachable: no answer within {timeout:g} s", unreachable)
    except paramiko.SSHException as exc:
        text = str(exc)
        if "known_hosts" in text:
            return None, Problem(host.name, f"host key at {where} is not in its known_hosts file")
        if "banner" in text:
            text = f"no SSH banner within {timeout:g} s, or the connection was closed"
        return None, Problem(host.name, f"unreachable: SSH to {where} failed ({text})", unreachable)
    except TimeoutError:
        return None, Problem(
            host.name, f"unreachable: SSH to {where} timed out after {timeout:g} s", unreachable
        )
    except (OSError, EOFError) as exc:
        reason = _os_reason(exc)
        return None, Problem(
            host.name, f"unreachable: SSH to {where} failed ({reason})", unreachable
        )
    finally:
        conn.close()


def _os_reason(exc: BaseException) -> str:
    import paramiko

    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        errors = list(exc.errors.values())
        exc = errors[0] if errors else exc
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


# -- the operation behind validate -----------------------------------------------------------


def preflight(ctx: Context, principal: Principal, *, connect: bool) -> PreflightOut:
    """The preflight of the whole fleet; with ``connect``, every SSH host is logged in to.

    It opens every member's vault file, so only an admin (the local CLI) may run it."""
    authorize(principal, Action.FLEET_READ)
    authorize(principal, Action.TOKENS_ADMIN)
    s = ctx.settings
    report = check_fleet(
        ctx.fleet,
        s.resolved_fleet,
        s.resolved_vault_password_file,
        connect=connect,
        remote_python=ctx.render_context.remote_python,
    )
    return to_out(report, connect)


def to_out(report: Report, connect: bool) -> PreflightOut:
    return PreflightOut(
        status=report.status,
        connect=connect,
        hosts=[
            PreflightHostOut(
                host=h.host,
                connection=h.connection,
                reached=h.reached,
                python=h.python,
                python_version=h.python_version,
                process_manager=h.process_manager,
            )
            for h in report.hosts
        ],
        problems=[
            PreflightProblemOut(
                host=p.host,
                kind="unreachable" if p.kind is ProblemKind.UNREACHABLE else "config",
                message=str(p),
            )
            for p in report.problems
        ],
    )
