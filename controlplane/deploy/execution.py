"""One process executing one run: the lease it holds, its heartbeat, cancellation and
signals.

The lease is the run's fencing number at the moment this process started it. The process
renews it on the database's clock, and stops (ansible-runner ends the ansible process
group when ``cancel_wanted`` says so) as soon as it no longer holds it: another node took
the run over, or it has not managed to renew it for half a lease, in which case others
may soon judge it dead. Stopping at half a lease, while others wait a whole lease, is what
keeps two executions from ever working on one stack at once.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from controlplane.deploy.model import Run, RunEvent
from controlplane.errors import LeaseLost
from controlplane.store.runs import RunStore

# How often, at most, a running play asks the store about cancel requests and the lease.
WATCH_SECONDS = 1.0


class Observer(Protocol):
    """Live view of a run (the terminal progress display, tests)."""

    def on_event(self, run: Run, event: RunEvent) -> None: ...

    def on_status(self, run: Run) -> None: ...


@dataclass
class Execution:
    """Per-run mutable state while one process executes it."""

    run: Run
    observer: Observer | None
    seq: int = 0
    plays: int = 0
    cancel_local: bool = False
    last_cancel_check: float = 0.0
    cancel_seen: bool = False
    stop_heartbeat: threading.Event = field(default_factory=threading.Event)
    # The lease this execution holds; None for recovery's read-only status play.
    fence: int | None = None
    renewed_at: float = field(default_factory=time.monotonic)
    lease_lost: bool = False

    def hold(self, store: RunStore) -> None:
        """Raise ``LeaseLost`` unless this execution still holds its run's lease."""
        if self.fence is None:
            return
        if self.lease_lost or not store.watch(self.run.id, self.fence)[0]:
            self.lease_lost = True
            raise LeaseLost(f"run {self.run.id} is no longer ours (lease {self.fence})")

    def lease_expiring(self, lease_seconds: float) -> bool:
        """No successful beat for half a lease: stop before anyone may take over."""
        if self.fence is None:
            return False
        if time.monotonic() - self.renewed_at > lease_seconds / 2:
            self.lease_lost = True
        return self.lease_lost

    def cancel_wanted(self, store: RunStore, lease_seconds: float) -> bool:
        """Polled by the runner while a play runs: True ends ansible's process group."""
        if self.cancel_local or self.cancel_seen or self.lease_expiring(lease_seconds):
            self.cancel_seen = self.cancel_seen or self.cancel_local
            return True
        now = time.monotonic()
        if now - self.last_cancel_check >= WATCH_SECONDS:
            self.last_cancel_check = now
            if self.fence is None:
                self.cancel_seen = store.cancel_requested(self.run.id)
            else:
                try:
                    held, self.cancel_seen = store.watch(self.run.id, self.fence)
                except Exception:  # the store is unreachable: the heartbeat decides
                    return False
                self.lease_lost = self.lease_lost or not held
        return self.cancel_seen or self.lease_lost

    def keep_beating(self, store: RunStore, every_seconds: float) -> None:
        """Renew the lease until told to stop or until it is lost (a thread's target)."""
        assert self.fence is not None
        while not self.stop_heartbeat.wait(every_seconds):
            try:
                held = store.heartbeat(self.run.id, self.fence)
            except Exception:  # a missed beat must not kill the run; half a lease of them does
                continue
            if not held:
                self.lease_lost = True
                return
            self.renewed_at = time.monotonic()


@contextmanager
def interrupts_cancel(ex: Execution) -> Iterator[None]:
    """Ctrl-C or SIGTERM while we run a playbook cancels it instead of orphaning it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        ex.cancel_local = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
