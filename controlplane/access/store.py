"""The token repository: create, list, revoke, and authenticate a presented token.

Works over any SQLAlchemy engine (SQLite or PostgreSQL). Only the SHA-256 of a token is
stored; the token is returned once by ``create`` and exists nowhere else afterwards.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, RowMapping, insert, select, update
from sqlalchemy.exc import IntegrityError

from controlplane.access.policy import Principal, Role
from controlplane.access.tokens import (
    TokenRecord,
    TokenStatus,
    check_grant,
    check_name,
    generate,
    parse_reference,
    parse_token,
    prefix_of,
    token_hash,
)
from controlplane.clock import Clock, as_utc, utc_now
from controlplane.errors import InvalidInput, NotFound, Unauthenticated
from controlplane.store.schema import api_tokens as table

# One message for every way a token can fail, so a caller cannot tell an unknown token
# from a revoked or expired one.
REJECTED = "unknown, expired or revoked token"

# Writing last_used_at on every request would turn each API read into a write; a minute's
# resolution is enough to see which tokens are still in use.
LAST_USED_RESOLUTION = timedelta(minutes=1)

_CREATE_ATTEMPTS = 5


def _time(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _record(row: RowMapping) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        name=row["name"],
        role=Role(row["role"]),
        members=frozenset(row["members"]),
        created_by=row["created_by"],
        created_at=as_utc(row["created_at"]),
        expires_at=_time(row["expires_at"]),
        revoked_at=_time(row["revoked_at"]),
        last_used_at=_time(row["last_used_at"]),
    )


_COLUMNS = [c for c in table.c if c.name != "secret_sha256"]


class TokenStore:
    """API tokens in the database."""

    def __init__(self, engine: Engine, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.clock = clock

    def create(
        self,
        *,
        role: str | Role,
        members: Iterable[str] = (),
        lifetime: timedelta,
        created_by: str,
        known_members: Collection[str],
        name: str | None = None,
    ) -> tuple[TokenRecord, str]:
        """Make a token; returns its record and the token itself, which is never
        stored and cannot be shown again."""
        parsed_role, chosen = check_grant(role, members, known_members)
        if lifetime <= timedelta(0):
            raise InvalidInput("expires: must be in the future")
        label = None if name is None else check_name(name)
        now = self.clock()
        for _ in range(_CREATE_ATTEMPTS):
            new = generate()
            record = TokenRecord(
                id=new.id,
                name=label or f"{parsed_role.value}-{new.id}",
                role=parsed_role,
                members=chosen,
                created_by=created_by,
                created_at=now,
                expires_at=now + lifetime,
            )
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        insert(table).values(**self._values(record), secret_sha256=new.sha256)
                    )
            except IntegrityError:
                continue  # a 48-bit id collided: draw again
            return record, new.secret
        raise RuntimeError("could not draw an unused token id")  # pragma: no cover

    @staticmethod
    def _values(record: TokenRecord) -> dict[str, Any]:
        return {
            "id": record.id,
            "name": record.name,
            "prefix": record.prefix,
            "role": record.role.value,
            "members": sorted(record.members),
            "created_by": record.created_by,
            "created_at": record.created_at,
            "expires_at": record.expires_at,
        }

    def list(self) -> list[TokenRecord]:
        """Every token, revoked and expired ones included, oldest first."""
        query = select(*_COLUMNS).order_by(table.c.created_at, table.c.id)
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def get(self, reference: str) -> TokenRecord:
        """A token by its id, its prefix or the whole token."""
        token_id = parse_reference(reference)
        with self.engine.connect() as conn:
            row = conn.execute(select(*_COLUMNS).where(table.c.id == token_id)).mappings().first()
        if row is None:
            # Named by prefix: ``reference`` may be the whole token, which no message repeats.
            raise NotFound(f"token: no token {prefix_of(token_id)}")
        return _record(row)

    def revoke(self, reference: str) -> tuple[TokenRecord, bool]:
        """Revoke a token from now on; returns its record and whether this call revoked
        it (False when it already was)."""
        record = self.get(reference)
        if record.revoked_at is not None:
            return record, False
        now = self.clock()
        with self.engine.begin() as conn:
            result = conn.execute(
                update(table)
                .where(table.c.id == record.id, table.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        if result.rowcount == 0:  # revoked meanwhile by someone else
            return self.get(record.id), False
        return self.get(record.id), True

    def authenticate(self, secret: str) -> Principal:
        """The principal a presented token stands for; ``Unauthenticated`` with the same
        message whether the token is malformed, unknown, expired or revoked."""
        token_id = parse_token(secret.strip())
        if token_id is None:
            raise Unauthenticated(REJECTED)
        query = select(*_COLUMNS).where(table.c.secret_sha256 == token_hash(secret.strip()))
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None or row["id"] != token_id:
            raise Unauthenticated(REJECTED)
        record = _record(row)
        now = self.clock()
        if record.status(now) is not TokenStatus.ACTIVE:
            raise Unauthenticated(REJECTED)
        last = record.last_used_at
        if last is None or now - last >= LAST_USED_RESOLUTION:
            self._touch(record.id, now)
        return record.principal()

    def _touch(self, token_id: str, now: datetime) -> None:
        stale = now - LAST_USED_RESOLUTION
        with self.engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.id == token_id)
                .where((table.c.last_used_at.is_(None)) | (table.c.last_used_at <= stale))
                .values(last_used_at=now)
            )
