"""Live per-host, per-task progress of a run in the terminal (Rich), and run summaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from controlplane.deploy.model import HostResult, Run, RunEvent, RunStatus

_STATE_STYLE = {
    "waiting": "dim",
    "running": "cyan",
    "ok": "green",
    "changed": "yellow",
    "failed": "bold red",
    "unreachable": "bold red",
}


@dataclass
class _HostLine:
    task: str = ""
    state: str = "waiting"
    ok: int = 0
    changed: int = 0
    failed: int = 0


@dataclass
class LiveProgress:
    """An ``Observer`` that redraws a table per event; writes to stderr so --json stays clean."""

    console: Console
    hosts: dict[str, dict[str, _HostLine]] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    live: Live | None = None

    def __enter__(self) -> LiveProgress:
        self.live = Live(self._render(), console=self.console, refresh_per_second=8)
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(*exc)

    def on_status(self, run: Run) -> None:
        self.runs[run.id] = run
        lines = self.hosts.setdefault(run.id, {})
        for host in run.hosts:
            lines.setdefault(host, _HostLine())
        self._refresh()

    def on_event(self, run: Run, event: RunEvent) -> None:
        lines = self.hosts.setdefault(run.id, {})
        if event.host is None:
            return
        line = lines.setdefault(event.host, _HostLine())
        if event.task:
            line.task = event.task
        if event.event == "runner_on_start":
            line.state = "running"
        elif event.event == "runner_on_ok":
            line.ok += 1
            if event.data.get("changed"):
                line.changed += 1
            line.state = "changed" if line.changed else "ok"
        elif event.event == "runner_on_skipped" and line.state == "running":
            line.state = "changed" if line.changed else "ok"
        elif event.event == "runner_on_failed":
            line.failed += 1
            line.state = "failed"
        elif event.event == "runner_on_unreachable":
            line.state = "unreachable"
        self._refresh()

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def _render(self) -> Group:
        parts = []
        for run_id, lines in self.hosts.items():
            run = self.runs.get(run_id)
            title = (
                f"{run.kind.value} {run.member or ''}/{run.app or ''} {run.version or ''} "
                f"\\[{run.status.value}] run {run_id[:8]}"
                if run
                else run_id[:8]
            )
            table = Table(title=title, expand=False)
            for col in ("host", "state", "task", "ok", "changed", "failed"):
                table.add_column(col)
            for host, line in sorted(lines.items()):
                table.add_row(
                    host,
                    Text(line.state, style=_STATE_STYLE.get(line.state, "")),
                    line.task[:48],
                    str(line.ok),
                    str(line.changed),
                    str(line.failed),
                )
            parts.append(table)
        return Group(*parts)


def run_json(run: Run, hosts: list[HostResult]) -> dict[str, Any]:
    """The plain-key JSON form of a run used by every ``--json`` output."""
    return {
        "id": run.id,
        "kind": run.kind.value,
        "status": run.status.value,
        "member": run.member,
        "app": run.app,
        "version": run.version,
        "playbook": run.playbook,
        "started_by": run.started_by,
        "reason": run.reason,
        "emergency_reason": run.emergency_reason,
        "params": run.params,
        "tuning": run.tuning,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "rc": run.rc,
        "error": run.error,
        "hosts": [
            {
                "host": h.host,
                "outcome": h.outcome.value,
                "ok": h.ok,
                "changed": h.changed,
                "failures": h.failures,
                "unreachable": h.unreachable,
                "release_before": h.release_before,
                "release_after": h.release_after,
                "started_at": h.started_at.isoformat() if h.started_at else None,
                "finished_at": h.finished_at.isoformat() if h.finished_at else None,
            }
            for h in hosts
        ],
    }


def run_table(run: Run, hosts: list[HostResult]) -> Table:
    style = "green" if run.status is RunStatus.SUCCESSFUL else "red"
    table = Table(
        title=f"run {run.id[:8]} {run.kind.value} {run.member or ''}/{run.app or ''} "
        f"{run.version or ''}: [{style}]{run.status.value}[/{style}]",
        caption=run.error or None,
    )
    for col in ("host", "outcome", "ok", "changed", "failed", "before", "after"):
        table.add_column(col)
    for h in hosts:
        table.add_row(
            h.host,
            h.outcome.value,
            str(h.ok),
            str(h.changed),
            str(h.failures + h.unreachable),
            h.release_before or "-",
            h.release_after or "-",
        )
    return table
