"""When a failed delivery is tried again, and when it is given up.

Exponential with a cap and jitter: by default 5 s, 30 s, 3 min, 18 min, then every hour,
each stretched or shrunk by up to 20 % at random so receivers coming back from an outage
are not hit by every sender at once; after 30 attempts or 24 hours the delivery is
``failed``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from controlplane.errors import InvalidInput


@dataclass(frozen=True)
class Backoff:
    first: timedelta = timedelta(seconds=5)
    factor: float = 6.0
    cap: timedelta = timedelta(hours=1)
    jitter: float = 0.2  # each delay is multiplied by 1 ± up to this
    max_attempts: int = 30
    max_age: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        if self.first <= timedelta(0) or self.cap < self.first:
            raise InvalidInput("backoff: first must be positive and at most cap")
        if self.factor < 1 or not 0 <= self.jitter < 1 or self.max_attempts < 1:
            raise InvalidInput("backoff: factor >= 1, 0 <= jitter < 1, max_attempts >= 1")

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> timedelta:
        """How long to wait after the ``attempts``-th failed attempt (1 = the first)."""
        if attempts < 1:
            raise InvalidInput("attempts: at least 1")
        # Capped before the power can overflow a float for a very long-failing delivery.
        steps = min(attempts - 1, 64)
        base = min(self.first.total_seconds() * self.factor**steps, self.cap.total_seconds())
        spread = 1 + self.jitter * (2 * rand() - 1)
        return timedelta(seconds=base * spread)

    def next_attempt(
        self,
        attempts: int,
        created: datetime,
        now: datetime,
        rand: Callable[[], float] = random.random,
    ) -> datetime | None:
        """When to try again after ``attempts`` failed attempts, or None to give up."""
        if attempts >= self.max_attempts:
            return None
        at = now + self.delay(attempts, rand)
        if at - created > self.max_age:
            return None
        return at
