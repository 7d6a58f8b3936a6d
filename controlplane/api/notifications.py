"""``GET /api/v1/notifications``: the webhook deliveries, newest first, for admins (the
model ``controlplane notifications list --json`` prints). Targets are shown by name; no
URL or secret is ever in an answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from controlplane.access.policy import Action, Principal
from controlplane.api.auth import context, requires
from controlplane.api.errors import ERROR_RESPONSES
from controlplane.api.query import known_query_only
from controlplane.app import Context
from controlplane.notify.operations import list_deliveries
from controlplane.notify.store import MAX_LIMIT, DeliveryStatus
from controlplane.schemas.notifications import DeliveryOut

router = APIRouter(
    prefix="/api/v1",
    tags=["notifications"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(known_query_only)],
)


@router.get("/notifications", summary="Webhook deliveries and how they went (admin only)")
def notifications(
    # Admin only: payloads name every member. The full inventory uses the same gate.
    principal: Annotated[Principal, requires(Action.TOKENS_ADMIN)],
    ctx: Annotated[Context, Depends(context)],
    status: Annotated[
        list[DeliveryStatus] | None,
        Query(description="only deliveries in this status (repeat)", max_length=3),
    ] = None,
    target: Annotated[str | None, Query(max_length=63, description="only this target")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="the newest N")] = 50,
) -> list[DeliveryOut]:
    chosen = [s.value for s in status] if status else None
    return list_deliveries(ctx, principal, statuses=chosen, target=target, limit=limit)
