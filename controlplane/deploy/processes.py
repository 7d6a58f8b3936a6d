"""Who owns a run, whether that owner is still alive, and cleaning up after a dead one."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import uuid
from functools import cache
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


# One random id per process start; keyed by pid so a forked child gets its own.
_TOKENS: dict[int, str] = {}


def _token() -> str:
    pid = os.getpid()
    if pid not in _TOKENS:
        _TOKENS[pid] = uuid.uuid4().hex[:16]
    return _TOKENS[pid]


@cache  # neither the boot nor a process's own pid namespace changes while it lives
def _place() -> str:
    """This kernel boot and pid namespace: where a pid means the same process.

    Containers may share a hostname yet each have their own pid namespace, so a pid is only
    worth looking up when both the boot and the namespace are ours."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return hashlib.sha256(f"{boot}/{namespace}".encode()).hexdigest()[:12]


def this_node() -> str:
    """``host:pid:starttime:place:token``. The random token makes it unique per process
    start; the rest is for people reading ``runs show`` and for ``node_alive_here``."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or 0}:{_place()}:{_token()}"


def node_alive_here(node: str) -> bool | None:
    """Whether ``node`` is alive, when this process can know it; None when it cannot.

    True for this very process. For another process it answers only when that process ran
    in this kernel boot and pid namespace (then the pid and its start time tell); anything
    else, including an older node id or a container sharing our hostname, is None, and
    the run's heartbeat on the database's clock decides."""
    try:
        _host, pid, started, place, token = node.rsplit(":", 4)
    except ValueError:
        return None
    if token == _token() and int(pid) == os.getpid():
        return True
    here = _place()
    if not here or place != here or not pid.isdigit():
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
