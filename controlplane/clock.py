"""The one way to read the time and to make a stored time aware.

Pure code takes ``now`` as an argument; only edges and adapters call ``utc_now``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A time read back from the store, made aware: everything stored is UTC, and SQLite
    hands back naive datetimes."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
