"""Webhook deliveries as the edges show them (``notifications list --json``,
``GET /api/v1/notifications``). Never a URL or a secret: a target is shown by name."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from controlplane.notify.store import Delivery


class DeliveryOut(BaseModel):
    """One event sent (or to be sent) to one target. ``id`` is the ``webhook-id`` header;
    ``status`` is pending, delivered or failed; ``last_http_status`` and ``last_error`` say
    how the last attempt went."""

    id: str
    target: str
    event_type: str
    event_key: str
    member: str | None
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    last_http_status: int | None
    last_error: str | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            target=d.target,
            event_type=d.event_type,
            event_key=d.event_key,
            member=d.member,
            status=d.status.value,
            attempts=d.attempts,
            created_at=d.created_at,
            next_attempt_at=d.next_attempt_at,
            last_attempt_at=d.last_attempt_at,
            delivered_at=d.delivered_at,
            last_http_status=d.last_http_status,
            last_error=d.last_error,
            payload=d.payload,
        )
