"""Runs: the list (filtered by member, app and status), one run with its hosts and its log
streaming live, launching a plan or a deploy (the gate's decision first), and cancelling.

The same operations as ``/api/v1/runs`` with the session's principal, so the same answers:
the board (no ``runs.read``) gets 403, an engineer asking for another member's run 404.
The log stream is the API's event stream (``api.events.run_events``) behind the session
cookie, each event sent unnamed with its log line already formatted (``log_line``), so the
page script and the server-rendered log read the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

from fastapi import Depends, Form, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from controlplane.access.policy import Action
from controlplane.api.errors import status_for
from controlplane.api.events import resume_after, run_events
from controlplane.api.runs import RunId, body_member
from controlplane.audit.chain import AuditAction
from controlplane.deploy import operations as ops
from controlplane.deploy.history import RunFilter, list_runs, show_run, visible_run
from controlplane.deploy.model import Run, RunEvent, RunStatus
from controlplane.errors import InvalidInput, Refused
from controlplane.fleet.operations import show_fleet
from controlplane.schemas.runs import RunDetailOut, RunEventOut
from controlplane.schemas.windows import DecisionOut
from controlplane.web.framework import CsrfChecked, Page, needs, page_router, render
from controlplane.windows import operations as windows_ops

router = page_router()

PAGE_SIZE = 50
LOG_LIMIT = 5000  # events rendered into a finished run's page; the stream has them all
STATUSES = [s.value for s in RunStatus]

Reader = Annotated[Page, needs(Action.RUNS_READ)]
Writer = Annotated[Page, needs(Action.RUNS_WRITE)]
Text = Annotated[str, Query(max_length=63)]


# -- the pure part: one log line per stored event --------------------------------------------


def log_line(event: str, host: str | None, task: str | None, data: Mapping[str, Any]) -> str:
    """A stored runner event as a line of the run's log, in ansible's own words; empty
    for events that only repeat what the next line says."""
    where = f"[{host}]" if host else ""
    if event == "playbook_on_start":
        return "PLAYBOOK started"
    if event == "playbook_on_play_start":
        return f"PLAY [{data.get('play') or ''}]"
    if event == "playbook_on_task_start":
        return f"TASK [{task or ''}]"
    if event == "runner_on_ok":
        state = "changed" if data.get("changed") else "ok"
        return f"{state}: {where}"
    if event == "runner_on_failed":
        msg = data.get("msg")
        return f"failed: {where}" + (f" {msg}" if msg else "")
    if event == "runner_on_unreachable":
        msg = data.get("msg") or data.get("reason")
        return f"unreachable: {where}" + (f" {msg}" if msg else "")
    if event == "runner_on_skipped":
        return f"skipping: {where}"
    if event == "runner_retry":
        return f"retrying: {where} {task or ''}".rstrip()
    if event == "runner_on_file_diff":
        return f"diff: {where}\n{data.get('diff') or ''}".rstrip()
    if event == "playbook_on_stats":
        return "PLAY RECAP\n" + recap(data)
    if event == "runner_on_start":
        return ""
    return f"{event}: {where} {task or ''}".rstrip()


def recap(data: Mapping[str, Any]) -> str:
    keys = ("ok", "changed", "failures", "dark", "skipped")
    hosts: set[str] = set()
    for key in keys:
        counts = data.get(key)
        if isinstance(counts, Mapping):
            hosts.update(str(h) for h in counts)
    lines = []
    for host in sorted(hosts):
        parts = []
        for key in keys:
            counts = data.get(key)
            value = counts.get(host, 0) if isinstance(counts, Mapping) else 0
            label = "unreachable" if key == "dark" else key
            parts.append(f"{label}={value}")
        lines.append(f"{host:<20} : " + "  ".join(parts))
    return "\n".join(lines)


def event_line(e: RunEvent | RunEventOut) -> str:
    return log_line(e.event, e.host, e.task, e.data)


# -- list ------------------------------------------------------------------------------------


@router.get("/runs")
def runs_list(
    page: Reader,
    member: Text = "",
    app: Text = "",
    status: Annotated[str, Query(max_length=20)] = "",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    # An empty select is "any": the form always sends every field.
    chosen = RunStatus(status) if status in STATUSES else None
    if status and chosen is None:
        raise InvalidInput(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    where = RunFilter(member=member or None, app=app or None, statuses=(chosen,) if chosen else ())
    runs = list_runs(page.ctx, page.principal, where, limit=PAGE_SIZE, cursor=cursor)
    members = show_fleet(page.ctx, page.principal).members
    query = {"member": member, "app": app, "status": status}
    return render(
        page,
        "web/runs.html",
        {
            "title": "Runs",
            "runs": runs,
            "members": members,
            "apps": [a.slug for a in page.ctx.fleet.apps],
            "statuses": STATUSES,
            "query": query,
            "may_launch": page.may(Action.RUNS_WRITE),
        },
    )


# -- one run ---------------------------------------------------------------------------------


def _run_context(page: Page, run: RunDetailOut) -> dict[str, Any]:
    finished = RunStatus(run.status).finished
    return {
        "run": run,
        "finished": finished,
        "may_cancel": page.may(Action.RUNS_WRITE) and not finished,
    }


@router.get("/runs/new")
def new_run(
    page: Writer,
    member: Text = "",
    app: Text = "",
    version: Annotated[str, Query(max_length=64)] = "",
    check: bool = True,
    review: bool = False,
) -> HTMLResponse:
    """The launch form; with ``review``, the gate's decision for what was chosen."""
    decision: DecisionOut | None = None
    if review and member:
        page.authorize(Action.RUNS_WRITE, member)
        decision = windows_ops.check_member(page.ctx, page.principal, member, app or None)
    return _launch_form(page, member, app, version, check, decision)


def _launch_form(
    page: Page,
    member: str,
    app: str,
    version: str,
    check: bool,
    decision: DecisionOut | None,
    *,
    reason: str = "",
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    members = show_fleet(page.ctx, page.principal).members
    return render(
        page,
        "web/run_new.html",
        {
            "title": "Plan or deploy",
            "members": members,
            "apps": page.ctx.fleet.apps,
            "chosen": {"member": member, "app": app, "version": version, "check": check},
            "decision": decision,
            "reason": reason,
            "error": error,
        },
        status_code=status_code,
    )


@router.post("/runs/new")
def launch(
    page: CsrfChecked,
    member: Annotated[str, Form(max_length=63)],
    app: Annotated[str, Form(max_length=63)] = "",
    version: Annotated[str, Form(max_length=64)] = "",
    check: Annotated[bool, Form()] = False,
    reason: Annotated[str, Form(max_length=1000)] = "",
    emergency_reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Launch as ``POST /api/v1/runs/deploy`` does (detached); then to the run's page."""
    ctx, principal = page.ctx, page.principal
    try:
        # Another member's stack is refused like an unknown one, and the attempt audited.
        body_member(page.request, ctx, principal, member, audit_action(check))
        ops.recover_runs(ctx)  # a dead run's locks must not refuse this one
        runs = ops.deploy(
            ctx,
            principal,
            member,
            app=app or None,
            version=version or None,
            check=check,
            reason=reason.strip(),
            emergency_reason=emergency_reason.strip() or None,
            wait=False,
        )
    except Refused as exc:
        if status_for(exc) != 409:
            raise  # not allowed: the error page says so
        # The gate closed or a lock is held: back to the form, with today's decision.
        decision = windows_ops.check_member(ctx, principal, member, app or None)
        return _launch_form(
            page,
            member,
            app,
            version,
            check,
            decision,
            reason=reason,
            error=str(exc).splitlines()[0] if str(exc) else "refused",
            status_code=409,
        )
    except InvalidInput as exc:
        return _launch_form(
            page,
            member,
            app,
            version,
            check,
            None,
            reason=reason,
            error=str(exc),
            status_code=422,
        )
    if len(runs) == 1:
        return RedirectResponse(f"/runs/{runs[0].id}", status_code=303)
    return RedirectResponse(f"/runs?member={member}", status_code=303)


def audit_action(check: bool) -> AuditAction:
    return AuditAction.PLAN if check else AuditAction.DEPLOY


@router.get("/runs/{run_id}")
def run_page(run_id: RunId, page: Reader) -> HTMLResponse:
    run = show_run(page.ctx, page.principal, run_id)
    events = page.ctx.runs.events(run.id, limit=LOG_LIMIT)
    lines = [line for line in (event_line(e) for e in events) if line]
    last_seq = events[-1].seq if events else -1
    context = _run_context(page, run)
    return render(
        page,
        "web/run.html",
        {
            **context,
            "title": f"Run {run.id[:8]}",
            "log": "\n".join(lines),
            "log_cut": len(events) >= LOG_LIMIT,
            "last_seq": last_seq,
        },
    )


@router.get("/runs/{run_id}/summary")
def run_summary(run_id: RunId, page: Reader) -> HTMLResponse:
    run = show_run(page.ctx, page.principal, run_id)
    return render(page, "web/_run_summary.html", _run_context(page, run))


def _followed(run_id: RunId, page: Reader) -> Run:
    return visible_run(page.ctx, page.principal, run_id, Action.RUNS_READ)


@router.get("/runs/{run_id}/events", response_class=EventSourceResponse)
async def run_log(
    run: Annotated[Run, Depends(_followed)],
    after: Annotated[int, Depends(resume_after)],
    page: Reader,
) -> AsyncIterator[ServerSentEvent]:
    """The API's event stream for the session: each event unnamed, as a log line."""
    async for sent in run_events(run, after, page.ctx):
        if sent.event == "end" or not isinstance(sent.data, RunEventOut):
            yield sent
            continue
        e = sent.data
        yield ServerSentEvent(
            id=sent.id, data={"seq": e.seq, "event": e.event, "line": event_line(e)}
        )


@router.post("/runs/{run_id}/cancel")
def cancel(run_id: RunId, page: CsrfChecked) -> Response:
    run = ops.cancel(page.ctx, page.principal, run_id, reason="cancelled from the web page")
    return RedirectResponse(f"/runs/{run.id}", status_code=303)
