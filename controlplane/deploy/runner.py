"""The one adapter to ansible-runner. Nothing else in the package imports ``ansible_runner``.

Runs are tuned here: pipelining and SSH ControlPersist, and a transfer method that works
against every sshd we meet (sftp/scp fall back slowly on the test hosts).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

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
    playbook: Path
    inventory: Mapping[str, Any]
    extravars: Mapping[str, Any] = field(default_factory=dict)
    limit: str | None = None
    check: bool = False
    tuning: Tuning = field(default_factory=Tuning)
    envvars: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: int | None = None


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


def control_path_dir() -> Path:
    # ssh's ControlPath must fit in a unix socket name (~104 bytes): keep it short.
    digest = hashlib.sha1(str(os.getuid()).encode()).hexdigest()[:8]
    path = Path(tempfile.gettempdir()) / f"cp-ssh-{digest}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def ansible_bin_dir() -> Path:
    """Where this Python's ansible-playbook lives (the venv's bin, activated or not)."""
    return Path(sys.executable).parent


def ansible_env(tuning: Tuning) -> dict[str, str]:
    env = {
        "PATH": f"{ansible_bin_dir()}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "ANSIBLE_PIPELINING": str(tuning.pipelining),
        "ANSIBLE_SSH_TRANSFER_METHOD": "piped",
        "ANSIBLE_SSH_ARGS": (
            f"-o ControlMaster=auto -o ControlPersist={tuning.control_persist_seconds}s"
        ),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_path_dir()),
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


def mitogen_strategy_dir() -> Path:
    import ansible_mitogen

    return Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"


def scrub_artifacts(artifact_dir: Path) -> None:
    """Drop the process environment runner copies into ``command``: it may hold secrets."""
    command = artifact_dir / "command"
    try:
        data = json.loads(command.read_text())
    except (OSError, ValueError):
        return
    if isinstance(data, dict) and "env" in data:
        data.pop("env")
        command.write_text(json.dumps(data))


def run_playbook(
    request: PlaybookRequest,
    private_data_dir: Path,
    ident: str,
    *,
    event_handler: EventHandler | None = None,
    status_handler: StatusHandler | None = None,
    cancel_callback: Callable[[], bool] | None = None,
) -> PlaybookResult:
    """Run one playbook to completion and return its status, rc and per-host stats."""
    private_data_dir.mkdir(parents=True, exist_ok=True)
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
    runner = ansible_runner.run(
        private_data_dir=str(private_data_dir),
        ident=ident,
        playbook=str(request.playbook.resolve()),
        inventory=dict(request.inventory),
        extravars=dict(request.extravars),
        limit=request.limit,
        forks=request.tuning.forks,
        cmdline=cmdline,
        envvars={**ansible_env(request.tuning), **request.envvars},
        settings=settings,
        quiet=True,
        event_handler=on_event,
        status_handler=status_handler,
        cancel_callback=cancel_callback,
        suppress_env_files=True,
    )
    scrub_artifacts(Path(runner.config.artifact_dir))
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
