"""What one playbook run produced, and how it becomes the run's per-host record."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from controlplane.deploy.model import (
    HostOutcome,
    HostResult,
    Run,
    RunEvent,
    RunFailure,
    RunStatus,
)
from controlplane.deploy.reasons import HostReason, run_failure
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
    reasons: Mapping[str, HostReason] | None = None,
    *,
    planned: bool = False,
) -> None:
    """Each host's outcome, counts, releases before and after, when it was worked on, and
    for a failed or unreachable host the reason.

    ``finals`` are releases learnt after the play (a rollback, or asking untouched hosts).
    ``planned``: a plan (check mode), whose "after" is the release it would switch to."""
    states = {v.host: v for v in verdict.hosts} if verdict else {}
    reported = {r.host: r for r in play.reports}
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
        if planned and host in reported:
            report = reported[host]
            before = report.before
            after = report.planned_after if report.planned_after is not None else report.after
        if finals and host in finals:
            after = finals[host]
            if v is not None and v.state is HostState.NOT_RUN:
                before = after  # never touched: it stayed where it was
        reason = (reasons or {}).get(host)
        bad = outcome in (HostOutcome.FAILED, HostOutcome.UNREACHABLE)
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
                reason=reason.text if reason is not None and bad else None,
            )
        )


def summary(verdict: RolloutVerdict, reasons: Mapping[str, HostReason] | None = None) -> str:
    """One line for the run's error naming each bad host with its reason, e.g.
    "rollout stopped: srv-01: health gate: GET /healthz answered 503 for 15 s"."""
    bad = [
        bad_host(v.host, (reasons or {}).get(v.host), v.reason, v.state.value)
        for v in verdict.hosts
        if v.state not in (HostState.SWITCHED, HostState.UNCHANGED)
    ]
    return "rollout stopped: " + ", ".join(bad) if bad else "rollout complete"


def bad_host(host: str, reason: HostReason | None, fallback: str | None, state: str) -> str:
    # "srv-01: host key mismatch" and "srv-01: unreachable" read the same way in an error;
    # a host the rollout never reached only says so ("srv-03 not_run").
    text = reason.text if reason is not None else fallback
    return _problem(host, text) if text else f"{host} {state}"


def failure_of(hosts: Mapping[str, HostOutcome], reasons: Mapping[str, HostReason]) -> RunFailure:
    """What kind of failure a failed run is, from its failed and unreachable hosts."""
    kinds = [
        reasons[h].kind
        if h in reasons
        else (RunFailure.UNREACHABLE if o is HostOutcome.UNREACHABLE else RunFailure.FAILED)
        for h, o in hosts.items()
        if o in (HostOutcome.FAILED, HostOutcome.UNREACHABLE)
    ]
    return run_failure(kinds)


def _problem(host: str, reason: str) -> str:
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
