"""The control plane's scheduler: APScheduler 3.x with its SQLAlchemy job store.

Jobs live in the control plane's own database (table ``apscheduler_jobs``, created by the
job store itself), so their schedules survive restarts. A persisted job can only name its
function by import path, so every job here points at ``run_registered(name)`` and each
process registers, by name, the callable that does the work (``add_job`` does both).

APScheduler 3.x does not coordinate several schedulers sharing one job store: when
several control-plane nodes run ``serve`` on one PostgreSQL database, a job may fire on
more than one node. Every job added here must therefore tolerate that (the probe round
takes the store's round lock and skips a round another node just did).

Usage::

    scheduler = build_scheduler(engine)
    add_job(scheduler, "uptime.probe", job.run, IntervalTrigger(seconds=30))
    scheduler.start()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from sqlalchemy import Engine

log = logging.getLogger(__name__)

JOB_TABLE = "apscheduler_jobs"
# Jobs in this store are this process's own (e.g. warming its caches): every node runs
# them, none persists them.
LOCAL = "local"

# Process-wide on purpose: APScheduler unpickles a job as "module:function" plus its
# arguments, so the callable behind a persisted job must be found by a name.
_registered: dict[str, Callable[[], object]] = {}
_registered_lock = threading.Lock()


def register(name: str, func: Callable[[], object]) -> None:
    """Make ``func`` the work behind the persisted job called ``name`` in this process."""
    with _registered_lock:
        _registered[name] = func


def unregister(name: str) -> None:
    with _registered_lock:
        _registered.pop(name, None)


def run_registered(name: str) -> None:
    """What every persisted job runs: the callable this process registered as ``name``."""
    with _registered_lock:
        func = _registered.get(name)
    if func is None:
        # Another node (perhaps a newer version) scheduled a job this process cannot run.
        log.warning("scheduled job %r has no implementation in this process; skipped", name)
        return
    func()


def build_scheduler(engine: Engine, *, max_workers: int = 4) -> BackgroundScheduler:
    """A background scheduler (not started) whose jobs persist in ``engine``'s database."""
    return BackgroundScheduler(
        jobstores={
            "default": SQLAlchemyJobStore(engine=engine, tablename=JOB_TABLE),
            LOCAL: MemoryJobStore(),
        },
        executors={"default": ThreadPoolExecutor(max_workers=max_workers)},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone="UTC",
    )


def add_job(
    scheduler: BackgroundScheduler,
    name: str,
    func: Callable[[], object],
    trigger: BaseTrigger,
    *,
    next_run_time: datetime | None = None,
    misfire_grace_time: int | None = None,
    local: bool = False,
) -> Any:
    """Register ``func`` as ``name`` and (re)schedule the persisted job ``name``.

    Adding a job that already exists replaces its trigger, so a changed interval in the
    settings takes effect at the next start. ``next_run_time`` runs it early (e.g. now).
    ``local`` jobs are kept in memory and run on every node rather than being shared.
    """
    register(name, func)
    extra: dict[str, Any] = {}
    if next_run_time is not None:
        extra["next_run_time"] = next_run_time
    if misfire_grace_time is not None:
        extra["misfire_grace_time"] = misfire_grace_time
    return scheduler.add_job(
        run_registered,
        trigger=trigger,
        args=[name],
        id=name,
        name=name,
        replace_existing=True,
        jobstore=LOCAL if local else "default",
        **extra,
    )
