"""``GET /api/v1/audit``: the newest audit entries the caller may read, oldest first.

Engineers read their members' entries; the board and admins read all of them. Asking for
another member's entries is a 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from controlplane.access.policy import Action, Principal
from controlplane.api.auth import context, requires
from controlplane.api.errors import ERROR_RESPONSES
from controlplane.api.query import known_query_only
from controlplane.app import Context
from controlplane.audit.store import MAX_LIMIT
from controlplane.schemas.audit import AuditEntryOut

router = APIRouter(
    prefix="/api/v1",
    tags=["audit"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(known_query_only)],
)


@router.get("/audit", summary="Who changed what, when and why, and refused attempts")
def audit(
    principal: Annotated[Principal, requires(Action.AUDIT_READ)],
    ctx: Annotated[Context, Depends(context)],
    member: Annotated[str | None, Query(max_length=63, description="only this member")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="the newest N entries")] = 100,
) -> list[AuditEntryOut]:
    entries = ctx.audit.list_for(principal, member=member, limit=limit)
    return [AuditEntryOut.of(e) for e in entries]
