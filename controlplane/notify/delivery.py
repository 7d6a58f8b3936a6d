"""Send due deliveries: signed (Standard Webhooks), on the sender's own threads.

Each attempt POSTs the payload as JSON with the ``webhook-id`` (the delivery's id, the
same on every retry so receivers can drop duplicates), ``webhook-timestamp`` and
``webhook-signature`` headers. A 2xx answer delivers it; anything else (another status, a
timeout, a refused connection) is recorded with the status or a short error, and the
backoff says when to try again or to give up. Redirects are not followed.

The sender owns its HTTP client and thread pool, so a slow or hanging receiver holds at
most ``per_target`` of its threads for at most the timeout, and never a run's thread or
one of the scheduler's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx
from sqlalchemy import Engine

import controlplane
from controlplane.clock import utc_now
from controlplane.notify.backoff import Backoff
from controlplane.notify.config import Target
from controlplane.notify.secrets import Signer
from controlplane.notify.store import Delivery, DeliveryStore

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0


def body_of(payload: Mapping[str, object]) -> str:
    """The exact text that is signed and sent."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True)


class Sender:
    def __init__(
        self,
        engine: Engine,
        targets: Sequence[Target],
        signers: Mapping[str, Signer],
        *,
        backoff: Backoff | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        workers: int = 4,
        per_target: int = 2,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = DeliveryStore(engine)
        self.targets = {t.name: t for t in targets}
        self.signers = dict(signers)
        self.backoff = backoff or Backoff()
        self.timeout = timeout
        self.workers = workers
        self.per_target = per_target
        self.clock = clock
        # httpx's timeout bounds each phase (connect, write, read); a claim outlives all.
        self.claim_for = timedelta(seconds=4 * timeout + 30)
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"user-agent": f"controlplane/{controlplane.__version__}"},
        )
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notify")
        self._lock = threading.Lock()
        self._inflight: dict[str, str] = {}  # delivery id -> target

    def dispatch(self) -> list[Future[None]]:
        """Claim due deliveries and start sending them; returns the attempts started."""
        with self._lock:
            free = self.workers - len(self._inflight)
            busy = Counter(self._inflight.values())
        if free <= 0:
            return []
        now = self.clock()
        started: list[Future[None]] = []
        for delivery in self.store.due(now, limit=max(50, 4 * self.workers)):
            if len(started) >= free:
                break
            if delivery.id in self._inflight or busy[delivery.target] >= self.per_target:
                continue
            target = self.targets.get(delivery.target)
            signer = self.signers.get(delivery.target)
            if target is None or signer is None:
                self.store.abandon(
                    delivery.id, f"target {delivery.target} is no longer in notifications.yml"
                )
                continue
            if not self.store.claim(delivery, now + self.claim_for):
                continue  # another node took it
            busy[delivery.target] += 1
            with self._lock:
                self._inflight[delivery.id] = delivery.target
            started.append(self._pool.submit(self._attempt, delivery, target, signer))
        return started

    def _attempt(self, delivery: Delivery, target: Target, signer: Signer) -> None:
        try:
            self._send(delivery, target, signer)
        except Exception as exc:  # the claim expires and the attempt is made again
            log.error(
                "notification %s to %s: attempt not recorded: %s",
                delivery.id,
                target.name,
                type(exc).__name__,
            )
        finally:
            with self._lock:
                self._inflight.pop(delivery.id, None)

    def _send(self, delivery: Delivery, target: Target, signer: Signer) -> None:
        body = body_of(delivery.payload)
        at = self.clock()
        headers = signer.headers(delivery.id, at, body)
        headers["content-type"] = "application/json"
        status: int | None = None
        error: str | None = None
        try:
            # Streamed and closed unread: a receiver's answer body is of no interest.
            with self._client.stream(
                "POST", target.url, content=body.encode("ascii"), headers=headers
            ) as response:
                status = response.status_code
        except httpx.TimeoutException:
            error = f"no answer within {self.timeout:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}".replace(target.url, "<url>")
        delivered = status is not None and 200 <= status < 300
        if status is not None and not delivered:
            error = f"HTTP {status}"
        attempts = delivery.attempts + 1
        done = self.clock()
        following = (
            None if delivered else self.backoff.next_attempt(attempts, delivery.created_at, done)
        )
        self.store.record(
            delivery.id,
            at=done,
            http_status=status,
            error=error,
            delivered=delivered,
            next_attempt=following,
        )
        what = f"notification {delivery.id} ({delivery.event_type}) to {target.name}"
        if delivered:
            log.info("%s delivered (attempt %d)", what, attempts)
        elif following is not None:
            log.warning(
                "%s: attempt %d failed (%s); next at %s",
                what,
                attempts,
                error,
                following.isoformat(timespec="seconds"),
            )
        else:
            log.error("%s failed for good after %d attempts (%s)", what, attempts, error)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no attempt is in flight (tests, shutdown); True when idle."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._inflight:
                    return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.01)

    def close(self) -> None:
        """Let attempts in flight finish (each is bounded by the timeout), then stop."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()
