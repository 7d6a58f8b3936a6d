"""The audit log in the database: append under concurrency, list by visibility, verify.

Works over any SQLAlchemy engine. Appends from several processes or threads keep one
chain: ``prev_hash`` is unique, so of two writers that read the same head only one insert
succeeds; the other re-reads the head and appends after it.
"""

from __future__ import annotations

import builtins
import random
import time
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, insert, select
from sqlalchemy.exc import IntegrityError

from controlplane.access.policy import Action, Principal, authorize
from controlplane.audit.chain import (
    GENESIS,
    LIMITS,
    AuditAction,
    AuditEntry,
    Outcome,
    Verification,
    seal,
    verify,
)
from controlplane.clock import Clock, as_utc, utc_now
from controlplane.errors import InvalidInput, StoreUnavailable
from controlplane.store.schema import audit_log as table

MAX_LIMIT = 10_000
# Enough for dozens of writers racing for the head at once; each loss costs one round trip.
_APPEND_ATTEMPTS = 200


def entry_from_row(row: RowMapping) -> AuditEntry:
    """An ``audit_log`` row as an entry (also for readers outside the log, e.g. the notifier)."""
    return AuditEntry(
        seq=row["seq"],
        at=as_utc(row["at"]),
        actor=row["actor"],
        role=row["role"],
        action=row["action"],
        outcome=row["outcome"],
        member=row["member"],
        target=row["target"],
        reason=row["reason"],
        detail=row["detail"] or {},
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def _head(conn: Connection) -> str:
    query = select(table.c.hash).order_by(table.c.seq.desc()).limit(1)
    return conn.execute(query).scalar_one_or_none() or GENESIS


class AuditLog:
    """Repository of audit entries."""

    def __init__(self, engine: Engine, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.clock = clock

    def record(
        self,
        principal: Principal,
        action: AuditAction,
        *,
        member: str | None = None,
        target: str | None = None,
        reason: str = "",
        outcome: Outcome = Outcome.OK,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append what ``principal`` did (or tried): the call operations and edges make."""
        extra = dict(detail or {})
        if principal.token_id is not None:
            # The id, never the token: it tells two tokens with the same name apart.
            extra.setdefault("token_id", principal.token_id)
        return self.append(
            actor=principal.name,
            role=principal.role.value,
            action=action,
            outcome=outcome,
            member=member,
            target=target,
            reason=reason,
            detail=extra,
        )

    def refused(
        self,
        principal: Principal,
        action: AuditAction,
        refusal: Exception | str,
        *,
        member: str | None = None,
        target: str | None = None,
        reason: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Record an attempt the access policy, the gate or a lock refused. Every refusal
        has one shape: ``reason`` is the caller's own, ``detail.refused`` says why not."""
        # ``member`` and ``target`` may be the caller's text, not names we know: cut to
        # what a column holds, so the refusal is still written.
        known = member if member is None or len(member) <= LIMITS["member"] else None
        return self.record(
            principal,
            action,
            member=known,
            target=None if target is None else target[: LIMITS["target"]],
            reason=reason,
            outcome=Outcome.REFUSED,
            detail={**(detail or {}), "refused": str(refusal)},
        )

    def append(
        self,
        *,
        actor: str,
        role: str,
        action: AuditAction | str,
        outcome: Outcome | str,
        member: str | None = None,
        target: str | None = None,
        reason: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry at the head of the chain and return it with its hash."""
        fields: dict[str, Any] = {
            "actor": actor,
            "role": role,
            "action": action,
            "outcome": outcome,
            "member": member,
            "target": target,
            "reason": reason,
            "detail": detail,
        }
        seal(GENESIS, at=self.clock(), **fields)  # bad input fails before any write
        for attempt in range(_APPEND_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    entry = seal(_head(conn), at=self.clock(), **fields)
                    values = {k: v for k, v in entry.__dict__.items() if k != "seq"}
                    values["detail"] = dict(entry.detail)
                    seq = conn.execute(insert(table).values(**values)).inserted_primary_key
                    return AuditEntry(**{**values, "seq": seq[0] if seq else None})
            except IntegrityError:
                # Another writer appended after the same head first; back off a little so
                # a crowd of writers does not retry in lockstep.
                time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))
        raise StoreUnavailable("audit log: could not append after repeated conflicts")

    def list(
        self,
        *,
        member: str | None = None,
        visible: Collection[str] | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """The newest ``limit`` entries, oldest first. ``visible`` (None: all) keeps only
        entries of those members, as an engineer sees them."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit: must be between 1 and {MAX_LIMIT}")
        query = select(table)
        if member is not None:
            query = query.where(table.c.member == member)
        if visible is not None:
            query = query.where(table.c.member.in_(sorted(visible)))
        if since is not None:
            if since.tzinfo is None:
                raise InvalidInput("since: must carry a time zone")
            query = query.where(table.c.at >= since)
        query = query.order_by(table.c.seq.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [entry_from_row(row) for row in reversed(rows)]

    def list_for(
        self,
        principal: Principal,
        *,
        member: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> builtins.list[AuditEntry]:
        """The entries ``principal`` may read: engineers their members' entries, the board
        and admins all of them. Asking for another member's entries is ``NotFound``."""
        authorize(principal, Action.AUDIT_READ, member)
        visible = principal.members if principal.scoped else None
        return self.list(member=member, visible=visible, since=since, limit=limit)

    def entries(self) -> builtins.list[AuditEntry]:
        """The whole chain in stored order."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(table).order_by(table.c.seq)).mappings().all()
        return [entry_from_row(row) for row in rows]

    def head(self) -> str:
        with self.engine.connect() as conn:
            return _head(conn)

    def verify(self, expected_head: str | None = None) -> Verification:
        """Check the whole chain; see ``chain.verify``."""
        return verify(self.entries(), expected_head)
