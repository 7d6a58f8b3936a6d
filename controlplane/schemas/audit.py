"""Audit log entries as the edges show them (``audit list --json``, ``GET /api/v1/audit``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from controlplane.audit.chain import AuditEntry


class AuditEntryOut(BaseModel):
    """One entry: who did (or tried) what, on which member, when, why, and the outcome.
    ``at`` is ISO 8601 in UTC; ``hash`` covers the entry and ``prev_hash``."""

    seq: int | None
    at: str
    actor: str
    role: str
    action: str
    member: str | None
    target: str | None
    reason: str
    outcome: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(
            seq=entry.seq,
            at=entry.at.isoformat(),
            actor=entry.actor,
            role=entry.role,
            action=entry.action,
            member=entry.member,
            target=entry.target,
            reason=entry.reason,
            outcome=entry.outcome,
            detail=dict(entry.detail),
            prev_hash=entry.prev_hash,
            hash=entry.hash,
        )
