"""The audit log's hash chain, the pure part: entries, their canonical form, verification.

What is recorded. Every change the control plane makes or refuses to make, as one entry
with an ``action`` (``AuditAction``: deploy, plan, rollback, cancel, emergency_override,
token_create, token_revoke, schedule_start, maintenance_skipped, and login and logout of a
web session) and an ``outcome`` (``Outcome``): ``ok`` the change was made, ``accepted`` a
run was started (its result is the run's), ``failed`` it was tried and failed, ``refused``
the caller, the windows gate or a lock said no. Refused attempts therefore use the same
action with outcome ``refused``, not an action of their own, so "every deploy of amsterdam"
is one filter. A refused entry keeps the caller's own ``reason`` and says why it was
refused in ``detail.refused``.

Who. ``actor`` is a token's name or the local user of the CLI (``user@host``), ``role`` the
role it acted in. No secret (token, password, vault content) ever goes into an entry.

Tamper evidence. Each entry's ``hash`` is the SHA-256 of the previous entry's hash
followed by the entry's canonical JSON (sorted keys, no whitespace, ASCII only, times in
UTC ISO 8601 with microseconds). The first entry follows ``GENESIS``. Editing an entry
breaks its own hash; deleting one leaves the next pointing at a hash no entry has;
reordering leaves an entry pointing at one that comes after it. Removing entries from the
end leaves a shorter valid chain, which only a head hash noted earlier reveals: verify
takes one (``expected_head``) for that reason.

The database sequence number is not hashed: PostgreSQL skips numbers when an append
retries, so gaps in it mean nothing; the chain alone says what is missing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any

from controlplane.errors import InvalidInput

GENESIS = "0" * 64


class AuditAction(StrEnum):
    DEPLOY = "deploy"
    PLAN = "plan"
    ROLLBACK = "rollback"
    CANCEL = "cancel"
    EMERGENCY_OVERRIDE = "emergency_override"
    TOKEN_CREATE = "token_create"
    TOKEN_REVOKE = "token_revoke"
    SCHEDULE_START = "schedule_start"
    MAINTENANCE_SKIPPED = "maintenance_skipped"
    LOGIN = "login"  # a web session was opened with a token
    LOGOUT = "logout"


class Outcome(StrEnum):
    OK = "ok"
    ACCEPTED = "accepted"
    FAILED = "failed"
    REFUSED = "refused"


# Column limits, checked before writing so both backends refuse the same entries (SQLite
# would store an over-long value that PostgreSQL rejects).
LIMITS = {"actor": 200, "role": 16, "action": 64, "member": 63, "target": 200, "outcome": 32}


@dataclass(frozen=True)
class AuditEntry:
    """One entry. ``action`` and ``outcome`` are kept as the stored text, not the enums,
    so a log written by a newer version (or tampered with) can still be read and verified."""

    at: datetime
    actor: str
    role: str
    action: str
    outcome: str
    member: str | None = None
    target: str | None = None
    reason: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""
    seq: int | None = None

    def content(self) -> dict[str, Any]:
        """What the hash covers besides the previous hash."""
        return {
            "at": iso(self.at),
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "outcome": self.outcome,
            "member": self.member,
            "target": self.target,
            "reason": self.reason,
            "detail": dict(self.detail),
        }

    def canonical(self) -> str:
        return canonical_json(self.content())

    def computed_hash(self) -> str:
        return chain_hash(self.prev_hash, self.canonical())


def iso(at: datetime) -> str:
    if at.tzinfo is None:
        raise InvalidInput("at: must carry a time zone")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_json(data: Any) -> str:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def chain_hash(prev_hash: str, canonical: str) -> str:
    return hashlib.sha256((prev_hash + canonical).encode("ascii")).hexdigest()


def normal_detail(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """``detail`` as it reads back from the database: plain JSON values only, so the hash
    computed now is the hash computed on every later read."""
    if not detail:
        return {}
    try:
        return dict(json.loads(canonical_json(dict(detail))))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"detail: not plain JSON ({exc})") from None


def _check_text(name: str, value: str | None) -> None:
    if value is None:
        return
    limit = LIMITS.get(name)
    if limit is not None and len(value) > limit:
        raise InvalidInput(f"{name}: at most {limit} characters")
    if "\x00" in value:
        raise InvalidInput(f"{name}: must not contain NUL characters")


def seal(
    prev_hash: str,
    *,
    at: datetime,
    actor: str,
    role: str,
    action: AuditAction | str,
    outcome: Outcome | str,
    member: str | None = None,
    target: str | None = None,
    reason: str = "",
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """A new entry after ``prev_hash``, validated and with its hash filled in."""
    if not actor.strip():
        raise InvalidInput("actor: must not be empty")
    if at.tzinfo is None:
        raise InvalidInput("at: must carry a time zone")
    values = {
        "actor": actor,
        "role": role,
        "action": str(action),
        "outcome": str(outcome),
        "member": member,
        "target": target,
        "reason": reason,
    }
    for name, value in values.items():
        _check_text(name, value)
    entry = AuditEntry(
        at=at.astimezone(UTC),
        actor=actor,
        role=role,
        action=str(action),
        outcome=str(outcome),
        member=member,
        target=target,
        reason=reason,
        detail=normal_detail(detail),
        prev_hash=prev_hash,
    )
    return replace(entry, hash=entry.computed_hash())


class Problem(Enum):
    EDITED = "edited"
    DELETED = "deleted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"


@dataclass(frozen=True)
class Break:
    """The first place the chain does not hold."""

    seq: int | None
    problem: Problem
    explanation: str

    def __str__(self) -> str:
        where = "audit log" if self.seq is None else f"audit entry {self.seq}"
        return f"{where}: {self.problem.value} ({self.explanation})"


@dataclass(frozen=True)
class Verification:
    entries: int
    head: str
    broken: Break | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None


def verify(entries: Sequence[AuditEntry], expected_head: str | None = None) -> Verification:
    """Walk ``entries`` in stored order and report the first break, if any.

    ``expected_head`` is a head hash noted earlier: it must still be in the chain, which
    is the only way to notice entries removed from the end.
    """
    position = {e.hash: i for i, e in enumerate(entries)}
    expected_prev = GENESIS
    for i, entry in enumerate(entries):
        if entry.computed_hash() != entry.hash:
            return Verification(
                i,
                expected_prev,
                Break(entry.seq, Problem.EDITED, "hash does not match its content"),
            )
        if entry.prev_hash != expected_prev:
            found = _misplaced(entries, position, i)
            return Verification(i, expected_prev, found)
        expected_prev = entry.hash
    noted = None if expected_head is None else expected_head.strip().lower()
    if noted is not None and noted != GENESIS and noted not in position:
        missing = Break(
            None,
            Problem.TRUNCATED,
            f"head {noted[:16]}… noted earlier is no longer in the chain",
        )
        return Verification(len(entries), expected_prev, missing)
    return Verification(len(entries), expected_prev)


def _misplaced(entries: Sequence[AuditEntry], position: Mapping[str, int], i: int) -> Break:
    entry = entries[i]
    before = position.get(entry.prev_hash)
    if before is not None and before != i - 1:
        other = entries[before].seq
        return Break(
            entry.seq,
            Problem.REORDERED,
            f"it follows entry {other}, which is stored {'after' if before > i else 'before'} it",
        )
    if i == 0:
        return Break(entry.seq, Problem.DELETED, "the entries before it are missing")
    return Break(entry.seq, Problem.DELETED, "the entry before it is missing")
