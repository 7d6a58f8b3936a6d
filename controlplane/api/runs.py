"""``/api/v1/runs``: launch deploys, plans and rollbacks, list and show runs, cancel one.

A launch answers 202 as soon as its runs are submitted: the gate was asked, the locks are
taken, and each run has been taken over by an executor process of its own (the same
detached executor as ``controlplane deploy --no-wait``), which holds the run's lease and
heartbeats it. The run therefore goes on when the request ends, and even when ``serve``
restarts; follow it with ``GET /runs/{run_id}/events``.

Members, apps and versions named in a body are bad input when unknown (422 naming the
field). An engineer naming another member's stack gets exactly the same answer, so the
answer does not reveal that the member exists; the attempt is audited as refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import Field

from controlplane.access.policy import Action, Principal
from controlplane.api.auth import context, requires
from controlplane.api.errors import ERROR_RESPONSES, ErrorResponse, error_response
from controlplane.api.guard import RequestBody
from controlplane.api.query import known_query_only
from controlplane.app import Context
from controlplane.audit.chain import AuditAction
from controlplane.deploy import operations as ops
from controlplane.deploy.history import RunFilter, RunLogGone, list_runs, run_log, show_run
from controlplane.deploy.model import Run, RunStatus
from controlplane.errors import (
    AppNotFound,
    HostNotFound,
    InvalidInput,
    MemberNotFound,
    VersionNotFound,
)
from controlplane.schemas.runs import LaunchedOut, RunDetailOut, RunOut, RunPageOut
from controlplane.windows.operations import parse_time

router = APIRouter(
    prefix="/api/v1",
    tags=["runs"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(known_query_only)],
)

Ctx = Annotated[Context, Depends(context)]
Reader = Annotated[Principal, requires(Action.RUNS_READ)]
RunId = Annotated[
    str, Path(description="run id, or a unique prefix of at least 4 characters", max_length=64)
]

MAX_LIMIT = 500
TIME_HELP = "ISO 8601; without an offset it is local time in the configured timezone"


class DeployBody(RequestBody):
    member: str = Field(max_length=63, description="member slug, e.g. amsterdam")
    app: str | None = Field(default=None, max_length=63, description="only this app")
    version: str | None = Field(
        default=None, max_length=64, description="version to deploy (needs app)"
    )
    check: bool = Field(default=False, description="plan only: check mode with diff")
    serial: str | None = Field(default=None, max_length=16, description="hosts per batch: N or P%")
    max_fail: str | None = Field(
        default=None, max_length=16, description="stop when a batch's failures exceed P%"
    )
    reason: str = Field(default="", max_length=1000, description="why; recorded on the run")
    emergency_reason: str | None = Field(
        default=None, max_length=1000, description="override the windows gate; recorded"
    )
    queue: bool = Field(
        default=False,
        description="wait for a conflicting run to end instead of refusing (the request "
        "returns once the locks are taken)",
    )
    record: bool = Field(
        default=False,
        description="once the run succeeded, the fleet's stacks.yml declares its version "
        "(needs version; a plan or a failed run records nothing)",
    )


class RollbackBody(RequestBody):
    member: str = Field(max_length=63, description="member slug")
    app: str = Field(max_length=63, description="the app to roll back")
    version: str | None = Field(
        default=None, max_length=64, description="release to return to (default: previous)"
    )
    reason: str = Field(default="", max_length=1000, description="why; recorded on the run")
    emergency_reason: str | None = Field(
        default=None, max_length=1000, description="override the windows gate; recorded"
    )


@contextmanager
def named_in_body() -> Iterator[None]:
    """A body naming an unknown member, app, host or version is bad input (422 naming the
    field), not a missing path (404)."""
    fields: tuple[tuple[type[Exception], str], ...] = (
        (MemberNotFound, "member"),
        (AppNotFound, "app"),
        (VersionNotFound, "version"),
        (HostNotFound, "host"),
    )
    try:
        yield
    except (MemberNotFound, AppNotFound, VersionNotFound, HostNotFound) as exc:
        field = next(name for kind, name in fields if isinstance(exc, kind))
        raise InvalidInput(f"{field}: {exc}") from None


def body_member(
    request: Request, ctx: Context, principal: Principal, member: str, action: AuditAction
) -> None:
    """Refuse a member the caller may not act on exactly as one that does not exist, and
    record the attempt when the member does exist."""
    known = {m.slug for m in ctx.fleet.members}
    if member in known and principal.sees(member):
        return
    if member in known:
        ctx.audit.refused(
            principal,
            action,
            f"{principal.name} does not act for {member}",
            member=member,
            target=f"{request.method} {request.url.path}",
        )
    raise InvalidInput(f"member: unknown member {member!r}")


def launched(ctx: Context, runs: list[Run]) -> LaunchedOut:
    return LaunchedOut(runs=[RunOut.of(r, ctx.runs.host_results(r.id)) for r in runs])


@router.post(
    "/runs/deploy",
    status_code=202,
    summary="Deploy (or with check, plan) a member's stack; answers once the runs started",
)
def deploy(
    body: DeployBody,
    request: Request,
    principal: Annotated[Principal, requires(Action.RUNS_WRITE, audit=AuditAction.DEPLOY)],
    ctx: Ctx,
) -> LaunchedOut:
    audit = AuditAction.PLAN if body.check else AuditAction.DEPLOY
    body_member(request, ctx, principal, body.member, audit)
    ops.recover_runs(ctx)  # a dead run's locks must not refuse this one
    with named_in_body():
        runs = ops.deploy(
            ctx,
            principal,
            body.member,
            app=body.app,
            version=body.version,
            check=body.check,
            serial=body.serial,
            max_fail=body.max_fail,
            reason=body.reason,
            emergency_reason=body.emergency_reason,
            wait=False,
            queue=body.queue,
            record=body.record,
        )
    return launched(ctx, runs)


@router.post(
    "/runs/rollback",
    status_code=202,
    summary="Switch a member's app back to its previous (or a named) release",
)
def rollback(
    body: RollbackBody,
    request: Request,
    principal: Annotated[Principal, requires(Action.RUNS_WRITE, audit=AuditAction.ROLLBACK)],
    ctx: Ctx,
) -> LaunchedOut:
    body_member(request, ctx, principal, body.member, AuditAction.ROLLBACK)
    ops.recover_runs(ctx)
    with named_in_body():
        runs = ops.rollback(
            ctx,
            principal,
            body.member,
            body.app,
            version=body.version,
            reason=body.reason,
            emergency_reason=body.emergency_reason,
            wait=False,
        )
    return launched(ctx, runs)


@router.get("/runs", summary="Runs, newest first, one page at a time")
def runs_list(
    principal: Reader,
    ctx: Ctx,
    member: Annotated[str | None, Query(max_length=63, description="only this member")] = None,
    app: Annotated[str | None, Query(max_length=63, description="only this app")] = None,
    status: Annotated[
        list[RunStatus] | None,
        Query(description="only runs in this status (repeat)", max_length=20),
    ] = None,
    since: Annotated[
        str | None, Query(max_length=40, description=f"created at or after; {TIME_HELP}")
    ] = None,
    until: Annotated[
        str | None, Query(max_length=40, description=f"created before; {TIME_HELP}")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="runs per page")] = 50,
    cursor: Annotated[
        str | None,
        Query(max_length=500, description="next_cursor of the previous page"),
    ] = None,
) -> RunPageOut:
    where = RunFilter(
        member=member,
        app=app,
        statuses=tuple(status or ()),
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
    )
    # No recovery here: a read never changes state. serve recovers every 30 s, and launches
    # recover first, so a dead run's locks cannot refuse a new one.
    return list_runs(ctx, principal, where, limit=limit, cursor=cursor)


@router.get("/runs/{run_id}", summary="One run: its hosts and, for a plan, what would change")
def runs_show(run_id: RunId, principal: Reader, ctx: Ctx) -> RunDetailOut:
    return show_run(ctx, principal, run_id)


@router.get(
    "/runs/{run_id}/log",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "the run's output, play by play",
        },
        410: {"model": ErrorResponse, "description": "The run's log is no longer kept"},
    },
    summary="A run's whole Ansible output, play by play, scrubbed of secrets",
)
def runs_log(run_id: RunId, principal: Reader, ctx: Ctx) -> Response:
    try:
        text = run_log(ctx, principal, run_id)
    except RunLogGone as exc:
        return error_response(410, "run_log_gone", str(exc))
    return Response(text, media_type="text/plain; charset=utf-8")


@router.post(
    "/runs/{run_id}/cancel",
    summary="Cancel a run: a queued one at once, a running one's ansible is ended",
)
def runs_cancel(
    run_id: RunId,
    principal: Annotated[Principal, requires(Action.RUNS_WRITE, audit=AuditAction.CANCEL)],
    ctx: Ctx,
) -> RunOut:
    run = ops.cancel(ctx, principal, run_id)
    return RunOut.of(run, ctx.runs.host_results(run.id))
