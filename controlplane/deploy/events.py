"""Pure handling of ansible-runner events: what we keep, and what we read from them.

We keep a small, scrubbed subset of each event. Task results can carry anything a module
returned, so only an allow-list of keys survives, failure messages are truncated, and any
known secret value is masked wherever it appears.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from controlplane.clock import as_utc, utc_now
from controlplane.deploy.model import RunEvent
from controlplane.deploy.rollout import ReleaseReport

REPORT_TASK = "cp-report-release"
# Machine-readable reports the playbooks emit (docs/playbooks.md); kept whole.
REPORT_TASKS = frozenset({REPORT_TASK, "cp-report-drift", "cp-report-patch"})
KEPT_EVENTS = frozenset(
    {
        "playbook_on_start",
        "playbook_on_play_start",
        "playbook_on_task_start",
        "runner_on_start",
        "runner_on_ok",
        "runner_on_failed",
        "runner_on_async_failed",
        "runner_on_skipped",
        "runner_on_unreachable",
        "runner_on_file_diff",
        "runner_retry",
        "playbook_on_stats",
    }
)
_SAFE_RESULT_KEYS = ("changed", "failed", "skipped", "unreachable", "rc", "attempts")
# Events whose failure message we keep (the first one of a host becomes its reason).
FAILURE_EVENTS = frozenset({"runner_on_failed", "runner_on_async_failed", "runner_on_unreachable"})
_MASK = "********"
_MAX_TEXT = 500


def mask(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` with every occurrence of a secret replaced, recursively."""
    secrets = [s for s in secrets if s]
    if not secrets:
        return value
    if isinstance(value, str):
        for s in secrets:
            value = value.replace(s, _MASK)
        return value
    if isinstance(value, Mapping):
        return {k: mask(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v, secrets) for v in value]
    return value


# What ssh (linear) and mitogen say when a host's key is not the one known_hosts holds.
_HOST_KEY_SIGNS = (
    "host key verification failed",
    "remote host identification has changed",
    "mismatching host key",
    "host key for",  # "Host key for [h]:p has changed and you have requested strict checking"
)
HOST_KEY_MISMATCH = "host key mismatch"


def unreachable_reason(msg: Any) -> str:
    """Why a host could not be reached, in a few words for the run's error."""
    text = str(msg or "").lower()
    if any(sign in text for sign in _HOST_KEY_SIGNS):
        return HOST_KEY_MISMATCH
    return "unreachable"


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"


def _created(raw: Mapping[str, Any]) -> datetime:
    stamp = raw.get("created")
    if isinstance(stamp, str):
        try:
            parsed = datetime.fromisoformat(stamp)
            return as_utc(parsed)
        except ValueError:
            pass
    return utc_now()


def to_run_event(
    run_id: str, seq: int, raw: Mapping[str, Any], secrets: Iterable[str] = ()
) -> RunEvent | None:
    """The part of a runner event we store, or None for events we do not keep."""
    name = raw.get("event")
    if name not in KEPT_EVENTS:
        return None
    data: Mapping[str, Any] = raw.get("event_data") or {}
    kept: dict[str, Any] = {}
    res = data.get("res")
    if isinstance(res, Mapping):
        for key in _SAFE_RESULT_KEYS:
            if key in res:
                kept[key] = res[key]
        if res.get("_ansible_no_log") or "censored" in res:
            # A no_log task's result arrives censored: say so, keep nothing of it.
            kept["no_log"] = True
        elif name in FAILURE_EVENTS and "msg" in res:
            kept["msg"] = _text(res["msg"])
        if name == "runner_on_unreachable":
            kept["reason"] = unreachable_reason(res.get("msg"))
        if data.get("task") in REPORT_TASKS and isinstance(res.get("msg"), Mapping):
            kept["report"] = dict(res["msg"])
    if name == "playbook_on_stats":
        for key in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored"):
            kept[key] = dict(data.get(key) or {})
    quiet = isinstance(res, Mapping) and (bool(res.get("_ansible_no_log")) or "censored" in res)
    if name == "runner_on_file_diff" and not quiet:
        kept["diff"] = _text(data.get("diff"))
    elif isinstance(res, Mapping) and res.get("changed") and res.get("diff") and not quiet:
        kept["diff"] = _text(res["diff"])
    if name in FAILURE_EVENTS and data.get("ignore_errors"):
        kept["ignored"] = True  # "...ignoring": the play goes on as if it had not failed
    if data.get("play"):
        kept["play"] = str(data["play"])
    return RunEvent(
        run_id=run_id,
        seq=seq,
        event=str(name),
        created_at=_created(raw),
        host=str(data["host"]) if data.get("host") else None,
        task=str(data["task"]) if data.get("task") else None,
        data=mask(kept, secrets),
    )


def release_report(event: RunEvent) -> ReleaseReport | None:
    """The release report a playbook's ``cp-report-release`` task emitted, if this is one."""
    report = event.data.get("report")
    if event.event != "runner_on_ok" or event.task != REPORT_TASK or event.host is None:
        return None
    if not isinstance(report, Mapping):
        return None
    plan = report.get("plan")
    plan = plan if isinstance(plan, Mapping) else {}
    try:
        return ReleaseReport(
            host=event.host,
            member=str(report["member"]),
            app=str(report["app"]),
            port=int(report["port"]),
            before=_release(report.get("before")),
            after=_release(report.get("after")),
            healthy=bool(report.get("healthy")),
            planned_after=_release(plan.get("after")),
            would_restart=bool(plan["restart"]) if "restart" in plan else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def _release(value: Any) -> str | None:
    return None if value in (None, "", "None") else str(value)
