"""Who owns a run, whether that owner is still alive, and cleaning up after a dead one."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path

RUN_ENV = "CONTROLPLANE_RUN_ID"
_PROC = Path("/proc")


def _start_time(pid: int) -> str | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counts from after the parenthesised command name.
    return stat.rsplit(")", 1)[1].split()[19]


def this_node() -> str:
    """``host:pid:starttime``: unique even when a pid is reused after a crash."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or 0}"


def node_alive_here(node: str) -> bool | None:
    """True/False for a node on this machine; None when the node is another machine."""
    try:
        host, pid, started = node.rsplit(":", 2)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    return _start_time(int(pid)) == started


# Only Ansible's own processes are cleaned up: an app a local-connection run started also
# inherits the run's environment, and it must keep serving.
_ANSIBLE_MARKS = (b"ansible", b"AnsiballZ", b"mitogen")


def orphans(run_id: str) -> list[int]:
    """Ansible processes still working for ``run_id`` (ansible-playbook and its workers)."""
    marker = f"{RUN_ENV}={run_id}".encode()
    found: list[int] = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0") and any(m in cmdline for m in _ANSIBLE_MARKS):
            found.append(int(entry.name))
    return found


def kill_orphans(run_id: str) -> int:
    """SIGKILL every Ansible process still working for a run whose owner died."""
    killed = 0
    for pid in orphans(run_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed
