"""Declared and imperative versions: what the fleet's stacks.yml declares for a member app
against what a deploy of a named version put live.

``deploy --record`` asks that a successful run's version be written to stacks.yml; the
engine's after-success hook does it here (``record_declared``) in whichever process
executed the run, and keeps the outcome as the run's ``cp_declared`` event. Every view of
a run in detail says what the fleet declares after it (``with_declared``), so an edge can
tell the user it was recorded, why it was not, or that ``provision`` would go back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from packaging.version import InvalidVersion, Version

from controlplane.clock import utc_now
from controlplane.deploy.model import Run, RunEvent, RunKind, RunStatus
from controlplane.errors import ControlPlaneError, OperationFailed
from controlplane.fleet.edit import set_version
from controlplane.fleet.loader import load_fleet
from controlplane.schemas.declared import DeclaredOut
from controlplane.schemas.runs import RunDetailOut

if TYPE_CHECKING:
    from controlplane.app import Context

# The run event that says what recording a deploy's version in stacks.yml did.
DECLARED_EVENT = "cp_declared"

log = logging.getLogger(__name__)


def version_newer(a: str, b: str) -> bool:
    """``a`` is a later release than ``b`` (PEP 440 order, as the catalogue's versions
    are); a version that does not parse is never called newer."""
    try:
        return Version(a) > Version(b)
    except InvalidVersion:
        return False


def record_declared(ctx: Context, run: Run) -> None:
    """After a deploy asked to record has succeeded: the fleet's stacks.yml declares its
    version. The engine calls this once the run is successful, in whichever process
    executed it (the CLI, a detached executor, serve's scheduler). What happened, or why
    nothing was written, is kept as the run's ``cp_declared`` event; the run stands
    either way."""
    if run.kind is not RunKind.DEPLOY or not run.options.record or run.options.check:
        return
    if run.member is None or run.app is None or run.version is None:
        return
    fleet_dir = ctx.settings.resolved_fleet
    data: dict[str, Any] = {"file": str(fleet_dir / "stacks.yml"), "version": run.version}
    try:
        change = set_version(fleet_dir, run.member, run.app, run.version)
        data.update(recorded=True, before=change.before)
    except ControlPlaneError as exc:
        data.update(recorded=False, error=str(exc))
        log.warning(
            "run %s: %s/%s %s not recorded: %s", run.id, run.member, run.app, run.version, exc
        )
    last = ctx.runs.last_seq(run.id)
    event = RunEvent(run.id, 0 if last is None else last + 1, DECLARED_EVENT, utc_now(), data=data)
    ctx.runs.append_events(run.id, [event])


def with_declared(ctx: Context, shown: RunDetailOut) -> RunDetailOut:
    """``shown`` with what the fleet declares for its member's app after it (deploys
    only), read from the fleet directory as it is now."""
    if shown.kind != RunKind.DEPLOY.value or not (shown.member and shown.app and shown.version):
        return shown
    fleet_dir = ctx.settings.resolved_fleet
    try:
        declared: str | None = load_fleet(fleet_dir).stack_app(shown.member, shown.app).version
    except ControlPlaneError:
        declared = None
    event: dict[str, Any] | None = None
    if shown.options.get("record"):
        last = ctx.runs.last_seq(shown.id)
        tail = [] if last is None else ctx.runs.events(shown.id, after_seq=last - 1)
        event = next((e.data for e in tail if e.event == DECLARED_EVENT), None)
    note = declared_note(shown, str(fleet_dir / "stacks.yml"), declared, event)
    return shown.model_copy(update={"declared": note})


def declared_note(
    run: RunDetailOut, file: str, declared: str | None, event: dict[str, Any] | None
) -> DeclaredOut | None:
    """What to tell about a deploy of ``run.version`` while the fleet declares
    ``declared``: recorded or not, and without recording, what ``provision`` would do.
    ``None`` when there is nothing to tell (the fleet declares what was deployed)."""
    assert run.member and run.app and run.version
    target, version = f"{run.member}/{run.app}", run.version
    record = bool(run.options.get("record"))
    plan = bool(run.options.get("check"))

    def out(
        note: str, *, recorded: bool = False, error: str | None = None, pending: bool = False
    ) -> DeclaredOut:
        return DeclaredOut(
            file=file,
            declared=declared,
            deployed=version,
            record=record,
            recorded=recorded,
            pending=pending,
            error=error,
            note=note,
        )

    if record:
        if plan:
            return out(f"plan: a deploy would record {target} {version} in {file}")
        if run.status == RunStatus.SUCCESSFUL.value:
            if event is not None and event.get("recorded"):
                before = event.get("before")
                if before == version:
                    return out(
                        f"recorded: {file} already declared {target} {version}", recorded=True
                    )
                was = f" (was {before})" if before else ""
                return out(f"recorded: {file} now declares {target} {version}{was}", recorded=True)
            if event is None:
                # The executor records just after the run's end: not there yet.
                return out(f"recording {target} {version} in {file} …", pending=True)
            why = str(event.get("error") or "unknown error")
            still = f"; the fleet still declares {declared}" if declared else ""
            return out(f"not recorded: {why}{still}", error=why)
        if run.status in (RunStatus.QUEUED.value, RunStatus.RUNNING.value):
            return out(
                f"{file} will declare {target} {version} once the run succeeds", pending=True
            )
        return out(f"nothing recorded: the run did not succeed; {file} is unchanged")
    if declared is None or declared == version:
        return None
    if run.status not in (
        RunStatus.SUCCESSFUL.value,
        RunStatus.QUEUED.value,
        RunStatus.RUNNING.value,
    ):
        return None
    if version_newer(version, declared):
        back = (
            "`controlplane provision` refuses to go back to it and "
            "`controlplane provision --force` would"
        )
    else:
        back = f"`controlplane provision` would return {target} to it"
    deploys = "would deploy" if plan else "deployed"
    return out(
        f"the fleet still declares {target} {declared} ({deploys} {version}): {back}; "
        f"to keep {version}: controlplane deploy {run.member} --app {run.app} "
        f"--version {version} --record"
    )


def ensure_recorded(shown: Sequence[RunDetailOut]) -> None:
    """Raise when a successful run asked to record its version did not."""
    failed = [r.declared.note for r in shown if r.declared is not None and r.declared.error]
    if failed:
        raise OperationFailed("; ".join(failed))
