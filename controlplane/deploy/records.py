"""What one playbook run produced, and how it becomes the run's per-host record."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from controlplane.deploy.model import HostOutcome, HostResult, Run, RunEvent, RunStatus
from controlplane.deploy.rollout import HostState, ReleaseReport, RolloutVerdict
from controlplane.deploy.runner import PlaybookResult
from controlplane.store.runs import RunStore


@dataclass
class PlayOutcome:
    result: PlaybookResult
    events: list[RunEvent]
    reports: list[ReleaseReport]
    host_times: dict[str, tuple[datetime, datetime]]
    tuning: dict[str, Any]

    @property
    def failed_hosts(self) -> set[str]:
        return {h for h, s in self.result.stats.items() if s.failures}

    @property
    def unreachable_hosts(self) -> dict[str, str]:
        """Each unreachable host and why ("host key mismatch", or "unreachable")."""
        reasons = {
            e.host: str(e.data.get("reason") or "unreachable")
            for e in self.events
            if e.event == "runner_on_unreachable" and e.host
        }
        return {h: reasons.get(h, "unreachable") for h, s in self.result.stats.items() if s.dark}

    def host_problems(self) -> str:
        """The failed and unreachable hosts in one line for a run's error, e.g.
        "srv-01: host key mismatch, srv-02: failed"; empty when every host was fine."""
        dark = self.unreachable_hosts
        parts = [_problem(h, dark[h]) for h in sorted(dark)]
        parts += [f"{h}: failed" for h in sorted(self.failed_hosts - set(dark))]
        return ", ".join(parts)

    @property
    def ended(self) -> RunStatus | None:
        """Canceled or timed out, when the run did not end by itself."""
        if self.result.status == "canceled":
            return RunStatus.CANCELED
        if self.result.status == "timeout":
            return RunStatus.TIMED_OUT
        return None

    @property
    def nothing_ran(self) -> bool:
        """It failed before any task reached a host (e.g. the strategy did not load)."""
        return (
            self.result.status == "failed"
            and self.result.rc != 0
            and not any(e.event.startswith("runner_on_") for e in self.events)
        )


def record_hosts(
    store: RunStore,
    run: Run,
    hosts: list[str],
    play: PlayOutcome,
    verdict: RolloutVerdict | None,
    finals: Mapping[str, str | None] | None = None,
) -> None:
    """Each host's outcome, counts, releases before and after, and when it was worked on.

    ``finals`` are releases learnt after the play (a rollback, or asking untouched hosts)."""
    states = {v.host: v for v in verdict.hosts} if verdict else {}
    for host in hosts:
        stats = play.result.stats.get(host)
        v = states.get(host)
        if stats is None:
            outcome = HostOutcome.NOT_RUN
        elif stats.dark:
            outcome = HostOutcome.UNREACHABLE
        elif stats.failures or (v is not None and v.state is HostState.FAILED):
            outcome = HostOutcome.FAILED
        elif stats.changed:
            outcome = HostOutcome.CHANGED
        else:
            outcome = HostOutcome.OK
        before = v.before if v else None
        after = v.after if v else None
        if finals and host in finals:
            after = finals[host]
            if v is not None and v.state is HostState.NOT_RUN:
                before = after  # never touched: it stayed where it was
        started, finished = play.host_times.get(host, (None, None))
        store.record_host(
            HostResult(
                run_id=run.id,
                host=host,
                outcome=outcome,
                ok=stats.ok if stats else 0,
                changed=stats.changed if stats else 0,
                failures=stats.failures if stats else 0,
                unreachable=stats.dark if stats else 0,
                skipped=stats.skipped if stats else 0,
                release_before=before,
                release_after=after,
                started_at=started,
                finished_at=finished,
            )
        )


def summary(verdict: RolloutVerdict) -> str:
    """One line for the run's error; an unreachable host says why ("host key mismatch")."""
    bad = [
        _problem(v.host, v.reason) if v.reason else f"{v.host} {v.state.value}"
        for v in verdict.hosts
        if v.state not in (HostState.SWITCHED, HostState.UNCHANGED)
    ]
    return "rollout stopped: " + ", ".join(bad) if bad else "rollout complete"


def _problem(host: str, reason: str) -> str:
    # "srv-01: host key mismatch" and "srv-01: unreachable" read the same way in an error.
    return f"{host}: {reason}"


def prune_artifacts(root: Path, keep: int) -> None:
    """Keep the newest ``keep`` run directories (stdout and artifacts) under ``root``."""
    if not root.is_dir():
        return
    dirs = sorted(
        (p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for old in dirs[keep:]:
        shutil.rmtree(old, ignore_errors=True)
