"""``/api/v1/windows``: occurrences, gate checks, conflicts, and a member's .ics feed.

Answers are the models ``controlplane windows … --json`` prints. A gate check answers 200
whether the change is allowed or not: the decision is the answer, not an error. Times
without an offset are local time in the configured timezone.

An engineer sees the windows and conflicts that concern their members, may check a host
only when it carries one of their members' instances (another host is a 404), and gets a
404 for another member's check or feed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from controlplane.access.policy import Action, Principal
from controlplane.api.auth import context, requires
from controlplane.api.errors import ERROR_RESPONSES
from controlplane.api.query import known_query_only
from controlplane.app import Context
from controlplane.schemas.windows import ConflictsOut, DecisionOut, OccurrencesOut
from controlplane.windows import operations as ops
from controlplane.windows.operations import parse_time

router = APIRouter(
    prefix="/api/v1",
    tags=["windows"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(known_query_only)],
)

Ctx = Annotated[Context, Depends(context)]
Reader = Annotated[Principal, requires(Action.WINDOWS_READ)]
TIME = "date or ISO 8601 time; without an offset, local time in the configured timezone"
At = Annotated[str | None, Query(max_length=40, description=f"when (default now); {TIME}")]
From = Annotated[
    str | None, Query(alias="from", max_length=40, description=f"range start (default now); {TIME}")
]
To = Annotated[str | None, Query(alias="to", max_length=40, description=f"range end; {TIME}")]


@router.get("/windows", summary="Window and freeze occurrences (default: the next 30 days)")
def windows_list(
    principal: Reader,
    ctx: Ctx,
    member: Annotated[
        str | None, Query(max_length=63, description="only windows gating this member")
    ] = None,
    start: From = None,
    end: To = None,
) -> OccurrencesOut:
    return ops.list_occurrences(
        ctx, principal, member, parse_time(start, "from"), parse_time(end, "to")
    )


@router.get("/windows/check", summary="May a change to a member (or one app) start now or at?")
def windows_check(
    principal: Reader,
    ctx: Ctx,
    member: Annotated[str, Query(max_length=63, description="member slug")],
    app: Annotated[str | None, Query(max_length=63, description="only this app")] = None,
    at: At = None,
) -> DecisionOut:
    return ops.check_member(ctx, principal, member, app, parse_time(at, "at"))


@router.get("/windows/check-host", summary="May host work (patching) on a host start?")
def windows_check_host(
    principal: Reader,
    ctx: Ctx,
    host: Annotated[str, Query(max_length=63, description="host name")],
    at: At = None,
) -> DecisionOut:
    return ops.check_host(ctx, principal, host, parse_time(at, "at"))


@router.get(
    "/windows/conflicts",
    summary="Windows lost to freezes, and overlapping host windows (default: next 365 days)",
)
def windows_conflicts(
    principal: Reader, ctx: Ctx, start: From = None, end: To = None
) -> ConflictsOut:
    return ops.conflicts(ctx, principal, parse_time(start, "from"), parse_time(end, "to"))


@router.get(
    "/members/{member}/calendar.ics",
    summary="A member's windows and freezes as an iCalendar (RFC 5545) feed",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {"schema": {"type": "string"}}}}},
)
def member_calendar(
    member: Annotated[str, Path(max_length=63, description="member slug")],
    principal: Reader,
    ctx: Ctx,
    app: Annotated[str | None, Query(max_length=63, description="only windows gating it")] = None,
) -> Response:
    feed = ops.ics(ctx, principal, member, app)
    return Response(
        feed,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{member}.ics"'},
    )
