"""Notification operations for every edge: the deliveries, for admins only (a payload
may name any member)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from controlplane.access.policy import Action, Principal, authorize
from controlplane.errors import InvalidInput
from controlplane.notify.store import DeliveryStatus, DeliveryStore
from controlplane.schemas.notifications import DeliveryOut

if TYPE_CHECKING:
    from controlplane.app import Context

STATUSES = ", ".join(s.value for s in DeliveryStatus)


def parse_statuses(values: Sequence[str] | None) -> list[DeliveryStatus] | None:
    if not values:
        return None
    out: list[DeliveryStatus] = []
    for value in values:
        try:
            out.append(DeliveryStatus(value))
        except ValueError:
            raise InvalidInput(f"status: {value!r} is not one of {STATUSES}") from None
    return out


def list_deliveries(
    ctx: Context,
    principal: Principal,
    *,
    statuses: Sequence[str] | None = None,
    target: str | None = None,
    limit: int = 50,
) -> list[DeliveryOut]:
    """The newest deliveries, newest first."""
    # Admin only: the same gate the full inventory uses (every member's events).
    authorize(principal, Action.TOKENS_ADMIN)
    chosen = parse_statuses(statuses)
    found = DeliveryStore(ctx.engine).list(statuses=chosen, target=target, limit=limit)
    return [DeliveryOut.of(d) for d in found]
