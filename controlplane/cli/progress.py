"""Live per-host, per-task progress of a run in the terminal (Rich), and run summaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from controlplane.deploy.model import Run, RunEvent, RunStatus
from controlplane.schemas.runs import PlanChangeOut, RunDetailOut, RunOut

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


def run_table(run: RunOut) -> Table:
    """One run and where each of its hosts was left."""
    style = "green" if run.status == RunStatus.SUCCESSFUL.value else "red"
    kind = f"{run.kind} (plan)" if run.check else run.kind
    table = Table(
        title=f"run {run.id[:8]} {kind} {run.member or ''}/{run.app or ''} "
        f"{run.version or ''}: [{style}]{run.status}[/{style}]",
        caption=run.error or None,
    )
    for col in ("host", "outcome", "ok", "changed", "failed", "before", "after"):
        table.add_column(col)
    for h in run.hosts:
        table.add_row(
            h.host,
            h.outcome,
            str(h.ok),
            str(h.changed),
            str(h.failures + h.unreachable),
            h.release_before or "-",
            h.release_after or "-",
        )
    return table


def reason_lines(run: RunOut) -> list[str]:
    """One line per failed or unreachable host, saying why: "srv-01: health gate: ..."."""
    return [f"{h.host}: {h.reason}" for h in run.hosts if h.reason]


def plan_lines(run: RunDetailOut) -> list[str]:
    """What a plan found would change, per host: the release switch, the restart and the
    tasks (nothing for runs that are not plans). A plan that failed never says that
    nothing would change."""
    if run.changes is None:
        return []
    if run.status != RunStatus.SUCCESSFUL.value:
        done = [_plan_line(c) for c in run.changes]
        return [*done, f"plan {run.status}: what would change is not known for every host"]
    if not run.changes:
        return ["plan: nothing would change"]
    return [_plan_line(c) for c in run.changes]


def _plan_line(change: PlanChangeOut) -> str:
    parts: list[str] = []
    if change.release_after is not None:
        before = change.release_before or "nothing"
        parts.append(
            f"{before} -> {change.release_after}"
            if before != change.release_after
            else f"stays on {change.release_after}"
        )
    if change.restart:
        parts.append("would restart")
    line = f"plan: {change.host}: {', '.join(parts)}" if parts else f"plan: {change.host}"
    if change.tasks:
        line += f"; would change: {', '.join(change.tasks)}"
    return line


def print_run(console: Console, run: RunDetailOut) -> None:
    """A run as ``deploy`` and ``runs show`` print it: the table, why each bad host
    failed, and a plan's predictions."""
    console.print(run_table(run))
    for line in [*reason_lines(run), *plan_lines(run)]:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def event_line(e: RunEvent) -> str | None:
    """One line per host result while following a run; None for events not shown."""
    if not e.host or not e.event.startswith("runner_on_") or e.event == "runner_on_start":
        return None
    state = "changed" if e.data.get("changed") else e.event.removeprefix("runner_on_")
    return f"{e.created_at:%H:%M:%S} {e.host:12} {state:12} {e.task}"
