"""``GET /api/v1/uptime``: availability per member, app and period, with the SLA figure
(maintenance windows left out), error budget and burn rate; the rows
``controlplane uptime --json`` prints, for the members the caller sees."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from controlplane.access.policy import Action, Principal
from controlplane.api.auth import context, requires
from controlplane.api.errors import ERROR_RESPONSES
from controlplane.api.query import known_query_only
from controlplane.app import Context
from controlplane.schemas.uptime import AvailabilityOut
from controlplane.uptime import operations as ops

router = APIRouter(
    prefix="/api/v1",
    tags=["uptime"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(known_query_only)],
)


@router.get("/uptime", summary="Availability and SLA per member, app and period")
def uptime(
    principal: Annotated[Principal, requires(Action.UPTIME_READ)],
    ctx: Annotated[Context, Depends(context)],
    member: Annotated[str | None, Query(max_length=63, description="only this member")] = None,
    window: Annotated[
        Literal["1h", "24h", "7d", "30d"] | None, Query(description="default: all four")
    ] = None,
) -> list[AvailabilityOut]:
    return ops.availability(ctx, principal, member, window)
