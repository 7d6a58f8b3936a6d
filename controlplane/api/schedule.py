"""``GET /api/v1/schedule``: stored maintenance jobs and queued deploys, with their next
start (the model ``controlplane schedule list --json`` prints).

An engineer sees their members' queued deploys, and host jobs only for hosts that carry
one of their members' instances.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from controlplane.access.policy import Action, Principal
from controlplane.api.auth import context, requires
from controlplane.api.errors import ERROR_RESPONSES
from controlplane.api.query import known_query_only
from controlplane.app import Context
from controlplane.maintenance.operations import list_schedule
from controlplane.schemas.schedule import ScheduledJobOut

router = APIRouter(
    prefix="/api/v1",
    tags=["schedule"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(known_query_only)],
)


@router.get("/schedule", summary="Scheduled maintenance and queued deploys, next start first")
def schedule(
    principal: Annotated[Principal, requires(Action.SCHEDULE_READ)],
    ctx: Annotated[Context, Depends(context)],
) -> list[ScheduledJobOut]:
    return list_schedule(ctx, principal)
