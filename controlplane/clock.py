"""The one way to read the time and to make a stored time aware.

Pure code takes ``now`` as an argument; only edges and adapters call ``utc_now``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A time read back from the store, made aware: everything stored is UTC, and SQLite
    hands back naive datetimes."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def local_as_utc(value: datetime, zone: tzinfo) -> datetime:
    """A time a person gave, in UTC: without an offset it is local time in ``zone``, and
    an ambiguous or nonexistent local time takes ``fold=0`` (the documented DST choice)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)
