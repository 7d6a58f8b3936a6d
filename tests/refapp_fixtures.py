"""Helpers for real playbook runs: a small local fleet, test vault files, the reference
app's processes (found and killed by their pidfiles) and file-tree snapshots."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controlplane.deploy.runner import PlaybookRequest, PlaybookResult, Tuning, run_playbook
from controlplane.fleet.inventory import RenderContext, render_inventory
from controlplane.fleet.model import Fleet

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOKS = ROOT / "controlplane" / "playbooks"
REFAPP = PLAYBOOKS / "roles" / "cp_release" / "files" / "refapp.py"
ANSIBLE_VAULT = Path(sys.executable).parent / "ansible-vault"
REPORT_TASK = "cp-report-release"
# The engine's default strategy, several times faster than linear on these machines. Tests
# about the stock (linear) path ask for it by name.
FAST = Tuning(strategy="mitogen_linear")


# -- vault -------------------------------------------------------------------------------------


def write_vault(path: Path, secrets: dict[str, str], password_file: Path) -> None:
    """An encrypted member vault file: ``cp_secrets: {app: {db_password: ...}}``."""
    doc = {"cp_secrets": {app: {"db_password": pw} for app, pw in secrets.items()}}
    path.write_text(yaml.safe_dump(doc))
    subprocess.run(
        [str(ANSIBLE_VAULT), "encrypt", "--vault-password-file", str(password_file), str(path)],
        check=True,
        capture_output=True,
    )


# -- runs --------------------------------------------------------------------------------------


@dataclass
class Run:
    result: PlaybookResult
    events: list[dict[str, Any]]

    def reports(self, task: str = REPORT_TASK) -> list[tuple[str, dict[str, Any]]]:
        """(host, msg) of every report task the run emitted, in order."""
        out = []
        for event in self.events:
            data = event.get("event_data") or {}
            if event.get("event") == "runner_on_ok" and data.get("task") == task:
                out.append((str(data["host"]), dict(data["res"]["msg"])))
        return out

    def report(self, host: str, member: str, task: str = REPORT_TASK) -> dict[str, Any]:
        found = [m for h, m in self.reports(task) if h == host and m["member"] == member]
        assert len(found) == 1, f"{len(found)} {task} reports for {member} on {host}: {self}"
        return found[0]

    def __str__(self) -> str:
        failed = [
            (e["event_data"].get("host"), e["event_data"].get("task"), e["event_data"].get("res"))
            for e in self.events
            if e.get("event") in ("runner_on_failed", "runner_on_unreachable")
        ]
        return f"{self.result.status} rc={self.result.rc} stats={self.result.stats} failed={failed}"


@dataclass
class PlaybookLab:
    """A fleet rendered to an inventory, a vault per member and a runner data dir."""

    base: Path
    fleet: Fleet
    vault_dir: Path
    password_file: Path
    secrets: dict[str, dict[str, str]]
    roots: dict[str, Path]
    runs: int = 0
    inventory: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        python = sys.executable
        self.inventory = render_inventory(self.fleet, RenderContext(self.base, python))

    @property
    def private_data_dir(self) -> Path:
        return self.base / "runner"

    def run(
        self, playbook: str, check: bool = False, tuning: Tuning = FAST, **extravars: Any
    ) -> Run:
        self.runs += 1
        events: list[dict[str, Any]] = []

        def on_event(event: dict[str, Any]) -> bool:
            events.append(event)
            return True

        result = run_playbook(
            PlaybookRequest(
                PLAYBOOKS / playbook,
                self.inventory,
                extravars=extravars,
                # The runner refuses a run that names no hosts: this lab's hosts are all of them.
                limit=",".join(sorted(self.inventory["all"]["hosts"])),
                check=check,
                tuning=tuning,
                envvars={"ANSIBLE_VAULT_PASSWORD_FILE": str(self.password_file)},
                timeout_seconds=300,
            ),
            self.private_data_dir,
            f"{Path(playbook).stem}-{self.runs}",
            event_handler=on_event,
        )
        return Run(result, events)

    def vault_file(self, member: str) -> str:
        return str(self.vault_dir / f"{member}.yml")

    def app_dir(self, host: str, member: str, app: str) -> Path:
        return self.roots[host] / "opt/controlplane" / member / app

    def pid(self, host: str, member: str, app: str) -> int | None:
        path = self.roots[host] / "run/controlplane" / member / f"{app}.pid"
        return read_pid(path)


# -- the reference app's processes -------------------------------------------------------------


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def refapp_pids(*roots: Path) -> set[int]:
    """Reference-app processes serving from under ``roots``: by pidfile, then by /proc."""
    wanted = [str(r).encode() for r in roots]
    found: set[int] = set()
    for root in roots:
        for pidfile in root.glob("**/run/controlplane/**/*.pid"):
            pid = read_pid(pidfile)
            if pid is not None and b"refapp.py" in _cmdline(pid):
                found.add(pid)
    # A process whose pidfile is gone still names its pidfile under the root in its argv.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = _cmdline(int(entry.name))
            if b"refapp.py" in cmd and any(w in cmd for w in wanted):
                found.add(int(entry.name))
    return found


def kill_refapps(*roots: Path) -> set[int]:
    """SIGTERM every reference app under ``roots``, SIGKILL what is left after 5 s."""
    pids = refapp_pids(*roots)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(b"refapp.py" in _cmdline(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if b"refapp.py" in _cmdline(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return pids


# -- HTTP and files ----------------------------------------------------------------------------


def http_get(address: str, port: int, path: str) -> tuple[int, dict[str, Any]]:
    """GET without any proxy; the status and the JSON body."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{address}:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under ``root``: kind, mode, and content hash or link target."""
    out: dict[str, tuple[str, int, str]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", 0, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[rel] = ("file", stat.S_IMODE(st.st_mode), f"{digest}:{st.st_mtime_ns}")
    return out


def tree_text(root: Path) -> str:
    """Every readable file under ``root`` as one string, to search for leaked secrets."""
    chunks = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            chunks.append(path.read_bytes().decode(errors="replace"))
    return "\n".join(chunks)
