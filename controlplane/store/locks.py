"""The run locks table: which run holds which stack and host, shared or exclusive."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from controlplane.clock import as_utc
from controlplane.deploy.model import HeldLock, LockMode, LockRequest
from controlplane.errors import InvalidInput, LockHeld
from controlplane.store.schema import locks

Clock = Callable[[], datetime]

# Any fixed 64-bit number: PostgreSQL's advisory lock that serialises lock-table changes.
_PG_LOCK_TABLE_KEY = 0x636F6E74726F6C


class LockTable:
    """Taking and releasing run locks; mixed into ``RunStore``, which sets ``engine`` and
    ``clock``. Finishing a run (``RunStore.transition``) also frees its locks."""

    engine: Engine
    clock: Clock

    def acquire(self, run_id: str, requests: Sequence[LockRequest]) -> None:
        """Take every lock in ``requests`` for ``run_id``, or none and raise ``LockHeld``.

        Shared locks coexist with each other; an exclusive lock coexists with nothing.
        """
        if not requests:
            return
        with self.engine.begin() as conn:
            self._serialise(conn)
            wanted = {r.key: r for r in requests}
            rows = conn.execute(
                select(locks.c.key, locks.c.run_id, locks.c.mode)
                .where(locks.c.key.in_(list(wanted)), locks.c.run_id != run_id)
                .order_by(locks.c.acquired_at)
            ).all()
            for key, holder, mode in rows:
                if wanted[key].mode is LockMode.EXCLUSIVE or LockMode(mode) is LockMode.EXCLUSIVE:
                    raise LockHeld(key, holder)
            now = self.clock()
            try:
                conn.execute(
                    insert(locks),
                    [
                        {"key": r.key, "run_id": run_id, "mode": r.mode.value, "acquired_at": now}
                        for r in wanted.values()
                    ],
                )
            except IntegrityError:
                raise InvalidInput(f"run {run_id} already holds one of these locks") from None

    def release(self, run_id: str) -> int:
        with self.engine.begin() as conn:
            return conn.execute(delete(locks).where(locks.c.run_id == run_id)).rowcount

    def held_locks(self) -> list[HeldLock]:
        with self.engine.connect() as conn:
            return [
                HeldLock(r.key, r.run_id, LockMode(r.mode), as_utc(r.acquired_at))
                for r in conn.execute(select(locks).order_by(locks.c.key, locks.c.run_id))
            ]

    def _serialise(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_TABLE_KEY)))
