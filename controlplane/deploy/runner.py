"""The one adapter to ansible-runner. Nothing else in the package imports ``ansible_runner``.

Runs are tuned here: pipelining and SSH ControlPersist, and a transfer method that works
against every sshd we meet (sftp/scp fall back slowly on the test hosts).

And made safe here: a request is checked before anything starts (``boundary``), host key
checking is forced on for every strategy, inventory and extravars reach Ansible as
``!unsafe`` YAML, the ControlPath directory must be private, and the environment runner
copies into its ``command`` artifact is scrubbed, also for runs a crash cut short.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from controlplane.deploy.boundary import CheckedRun, check_run
from controlplane.errors import InvalidInput, Refused
from controlplane.fleet.inventory import unsafe_yaml

EventHandler = Callable[[dict[str, Any]], bool]
StatusHandler = Callable[[dict[str, Any], Any], None]


@dataclass(frozen=True)
class Tuning:
    """How a run is tuned; recorded on the run so a slow run can be explained."""

    pipelining: bool = True
    control_persist_seconds: int = 60
    forks: int = 10
    strategy: str = "linear"

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipelining": self.pipelining,
            "control_persist_seconds": self.control_persist_seconds,
            "forks": self.forks,
            "strategy": self.strategy,
        }


@dataclass(frozen=True)
class PlaybookRequest:
    """One playbook run. ``playbook`` must be one of the package's playbooks, ``extravars``
    the ones it documents, and ``limit`` the comma-separated hosts to run on (required:
    there is no "every host"). ``data_dir`` holds the ssh ControlPath dir."""

    playbook: Path
    inventory: Mapping[str, Any]
    extravars: Mapping[str, Any] = field(default_factory=dict)
    limit: str | None = None
    check: bool = False
    tuning: Tuning = field(default_factory=Tuning)
    envvars: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: int | None = None
    data_dir: Path | None = None


@dataclass(frozen=True)
class HostStats:
    ok: int = 0
    changed: int = 0
    failures: int = 0
    dark: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass(frozen=True)
class PlaybookResult:
    status: str
    rc: int
    stats: dict[str, HostStats]
    artifacts_dir: Path


# ssh appends "/<40 hex>" and, while binding, ".<16 random>" to this dir; a unix socket
# path holds about 104 bytes on every platform we meet.
CONTROL_DIR_MAX = 48
_IDENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_ENV_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]*")


def control_path_dir(base: Path) -> Path:
    """The directory for ssh's ControlPath sockets: ``<base>/ssh`` when that is short
    enough, else a short directory in the system temp dir named after ``base``.

    Whoever can write there can hijack a multiplexed connection, so the directory must be
    ours, mode 0700 and not a symlink; anything else is refused, never repaired."""
    base = base.resolve()
    path = base / "ssh"
    if len(str(path)) > CONTROL_DIR_MAX:
        digest = hashlib.sha256(str(base).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"cp-ssh-{digest}"
    else:
        base.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    check_private_dir(path)
    return path


def check_private_dir(path: Path) -> None:
    """Refuse a directory that is a symlink, not a directory, not ours, or open to others."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symlink"
    elif not stat.S_ISDIR(st.st_mode):
        problem = "is not a directory"
    elif st.st_uid != os.getuid():
        problem = f"belongs to uid {st.st_uid}, not to us ({os.getuid()})"
    elif stat.S_IMODE(st.st_mode) != 0o700:
        problem = f"has mode {stat.S_IMODE(st.st_mode):o}, not 700"
    else:
        return
    raise Refused(f"ssh control dir {path} {problem}; refusing to use it")


def ansible_bin_dir() -> Path:
    """Where this Python's ansible-playbook lives (the venv's bin, activated or not)."""
    return Path(sys.executable).parent


def ansible_env(tuning: Tuning, control_dir: Path) -> dict[str, str]:
    env = {
        "PATH": f"{ansible_bin_dir()}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "ANSIBLE_PIPELINING": str(tuning.pipelining),
        "ANSIBLE_SSH_TRANSFER_METHOD": "piped",
        "ANSIBLE_SSH_ARGS": (
            f"-o ControlMaster=auto -o ControlPersist={tuning.control_persist_seconds}s"
        ),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_FORKS": str(tuning.forks),
        "ANSIBLE_STRATEGY": tuning.strategy,
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_INTERPRETER_PYTHON": "auto_silent",
    }
    if tuning.strategy.startswith("mitogen"):
        env["ANSIBLE_STRATEGY_PLUGINS"] = str(mitogen_strategy_dir())
    return env


def secure_env(env: Mapping[str, str], control_dir: Path) -> dict[str, str]:
    """``env`` with host key checking forced on, whatever the caller or the process had.

    ansible-runner defaults ANSIBLE_HOST_KEY_CHECKING to False, and the stock ssh plugin then
    puts StrictHostKeyChecking=no before the inventory's own options; ssh keeps the first
    value it sees, so ours leads the ssh args, which come before everything else."""
    out = {k: v for k, v in env.items() if k != "ANSIBLE_SSH_CONTROL_PATH"}
    out["ANSIBLE_HOST_KEY_CHECKING"] = "True"
    out["ANSIBLE_SSH_HOST_KEY_CHECKING"] = "True"
    args = out.get("ANSIBLE_SSH_ARGS", "")
    out["ANSIBLE_SSH_ARGS"] = f"-o StrictHostKeyChecking=yes {args}".strip()
    out["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(control_dir)
    return out


def mitogen_strategy_dir() -> Path:
    import ansible_mitogen

    return Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"


def check_request(request: PlaybookRequest, ident: str = "run") -> CheckedRun:
    """Everything the request would hand to Ansible, checked; ``InvalidInput`` otherwise."""
    if not _IDENT_RE.fullmatch(ident):
        raise InvalidInput(f"ident: {ident!r} is not a plain run name")
    for key, value in request.envvars.items():
        if not isinstance(key, str) or not _ENV_NAME_RE.fullmatch(key):
            raise InvalidInput(f"envvars: {key!r} is not an environment variable name")
        if not isinstance(value, str) or "\0" in value:
            raise InvalidInput(f"envvars.{key}: must be text")
    return check_run(request.playbook, request.inventory, request.extravars, request.limit)


def write_inputs(
    private_data_dir: Path, inventory: Mapping[str, Any], extravars: Mapping[str, Any]
) -> Path:
    """Write the inventory and the extravars where Ansible reads them, as ``!unsafe`` YAML.

    ansible-runner would pass a dict inventory and extravars as plain JSON, which Ansible
    templates. The extravars go to ``env/extravars``, which runner hands to Ansible as
    ``-e @file`` itself (and ships with the private data dir to an execution node)."""
    inv_dir = private_data_dir / "inventory"
    if inv_dir.is_dir():
        # Only our file may be read as inventory: runner would load anything left here.
        for old in inv_dir.iterdir():
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
    inv_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (private_data_dir / "env").mkdir(mode=0o700, exist_ok=True)
    path = inv_dir / "hosts.yml"
    _write_private(path, unsafe_yaml(inventory))
    _write_private(private_data_dir / "env" / "extravars", unsafe_yaml(extravars))
    return path


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


def scrub_command(command: Path) -> bool:
    """Drop the process environment runner copies into a ``command`` artifact (it may hold
    secrets). True when the file was changed or removed."""
    try:
        text = command.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    try:
        data = json.loads(text)
    except ValueError:
        # Cut short by a crash: what is left may still be part of the environment.
        command.unlink(missing_ok=True)
        return True
    if not isinstance(data, dict) or "env" not in data:
        return False
    data.pop("env")
    _write_private(command, json.dumps(data))
    return True


def scrub_artifacts(artifact_dir: Path) -> None:
    """Scrub one run's artifacts (called as soon as runner returns)."""
    command = artifact_dir / "command"
    if command.is_file() and not command.is_symlink():
        scrub_command(command)


def scrub_leftover_artifacts(runs_dir: Path) -> int:
    """Scrub every ``command`` artifact under ``runs_dir`` (``<run>/artifacts/<ident>/``),
    for runs a crash ended before their own scrub. Returns how many files were changed."""
    if not runs_dir.is_dir():
        return 0
    scrubbed = 0
    for command in sorted(runs_dir.glob("*/artifacts/*/command")):
        if command.is_file() and not command.is_symlink():
            scrubbed += scrub_command(command)
    return scrubbed


def run_playbook(
    request: PlaybookRequest,
    private_data_dir: Path,
    ident: str,
    *,
    event_handler: EventHandler | None = None,
    status_handler: StatusHandler | None = None,
    cancel_callback: Callable[[], bool] | None = None,
) -> PlaybookResult:
    """Run one playbook to completion and return its status, rc and per-host stats.

    The request is checked first (``check_request``): a refused one starts nothing."""
    checked = check_request(request, ident)
    control_dir = control_path_dir(request.data_dir or private_data_dir)
    private_data_dir.mkdir(parents=True, exist_ok=True)
    inventory = write_inputs(private_data_dir, request.inventory, checked.extravars)
    final_stats: dict[str, Any] = {}

    def on_event(event: dict[str, Any]) -> bool:
        # runner.stats reads the stats event back from disk, which our handler may have
        # told runner not to write; keep it from the stream instead.
        if event.get("event") == "playbook_on_stats":
            final_stats.update(event.get("event_data") or {})
        return event_handler(event) if event_handler is not None else True

    cmdline = "--check --diff" if request.check else None
    settings: dict[str, Any] = {"suppress_ansible_output": True}
    if request.timeout_seconds:
        settings["job_timeout"] = request.timeout_seconds
    env = secure_env({**ansible_env(request.tuning, control_dir), **request.envvars}, control_dir)
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private_data_dir),
            ident=ident,
            playbook=str(checked.playbook),
            inventory=str(inventory),
            limit=",".join(checked.hosts),
            forks=request.tuning.forks,
            cmdline=cmdline,
            envvars=env,
            settings=settings,
            quiet=True,
            event_handler=on_event,
            status_handler=status_handler,
            cancel_callback=cancel_callback,
            suppress_env_files=True,
        )
    finally:
        scrub_artifacts(private_data_dir / "artifacts" / ident)
    raw = final_stats or runner.stats or {}
    hosts: set[str] = set()
    for key in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored"):
        hosts.update((raw.get(key) or {}).keys())
    stats = {
        h: HostStats(**{k: int((raw.get(k) or {}).get(h, 0)) for k in HostStats.__annotations__})
        for h in sorted(hosts)
    }
    return PlaybookResult(
        status=str(runner.status),
        rc=int(runner.rc if runner.rc is not None else -1),
        stats=stats,
        artifacts_dir=Path(runner.config.artifact_dir),
    )
