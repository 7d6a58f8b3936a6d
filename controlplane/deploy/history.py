"""Reading runs for any edge: a filtered page of runs, one run in detail, its events.

Every read asks the access policy first: an engineer sees only the runs of the members
they act for (another member's run is not found, not forbidden), and a role that may not
read runs at all is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import and_, or_, select

from controlplane.access.policy import Action, Principal, authorize
from controlplane.clock import as_utc, local_as_utc
from controlplane.deploy.declared import with_declared
from controlplane.deploy.events import mask, release_report
from controlplane.deploy.model import Run, RunEvent, RunKind, RunStatus
from controlplane.errors import InvalidInput, OperationFailed, RunNotFound
from controlplane.fleet.vault import VaultUnusable, open_vault, vault_file
from controlplane.schemas.runs import PlanChangeOut, RunDetailOut, RunOut, RunPageOut
from controlplane.store.schema import runs as runs_table

if TYPE_CHECKING:
    from controlplane.app import Context

MAX_PAGE = 1000
# While following a run, look for a dead owner this often: following must not wait forever.
RECOVER_EVERY_SECONDS = 5.0


def is_plan(run: Run) -> bool:
    """A check-mode run: it reports what would change and changes nothing.

    The one place that reads the run's free-form options for this."""
    return run.options.check


@dataclass(frozen=True)
class RunFilter:
    """Which runs a list shows; ``since`` is inclusive and ``until`` exclusive. Times
    without an offset are local time in the configured zone."""

    member: str | None = None
    app: str | None = None
    statuses: tuple[RunStatus, ...] = ()
    since: datetime | None = None
    until: datetime | None = None


def parse_status(text: str) -> RunStatus:
    try:
        return RunStatus(text)
    except ValueError:
        choices = ", ".join(s.value for s in RunStatus)
        raise InvalidInput(f"status: {text!r} is not one of {choices}") from None


def encode_cursor(run: Run) -> str:
    """An opaque token for "the runs after this one" in the list's stable order."""
    raw = json.dumps([as_utc(run.created_at).isoformat(), run.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, run_id = json.loads(raw)
        return as_utc(datetime.fromisoformat(at)).astimezone(UTC), str(run_id)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidInput("cursor: not a cursor from an earlier page of this list") from None


def _aware(value: datetime | None, zone: ZoneInfo) -> datetime | None:
    return None if value is None else local_as_utc(value, zone)


def visible_run(ctx: Context, principal: Principal, run_id: str, action: Action) -> Run:
    """The run (an id, or a unique prefix of at least 4 characters), when this caller may
    do ``action`` on it; another member's run (or, for a member-scoped caller, a run of no
    member) is not found, and is never named as a candidate of an ambiguous prefix."""
    authorize(principal, action)
    run = ctx.runs.resolve(run_id, frozenset(principal.members) if principal.scoped else None)
    if not principal.sees(run.member):
        raise RunNotFound(f"no run {run_id!r}")
    return run


def list_runs(
    ctx: Context,
    principal: Principal,
    where: RunFilter = RunFilter(),
    *,
    limit: int = 20,
    cursor: str | None = None,
) -> RunPageOut:
    """The newest runs first (created_at descending, then id), one page at a time."""
    authorize(principal, Action.RUNS_READ, where.member)
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit: must be between 1 and {MAX_PAGE}")
    t = runs_table
    query = select(t.c.id).order_by(t.c.created_at.desc(), t.c.id).limit(limit + 1)
    if where.member is not None:
        query = query.where(t.c.member == where.member)
    elif principal.scoped:
        query = query.where(t.c.member.in_(sorted(principal.members)))
    if where.app is not None:
        query = query.where(t.c.app == where.app)
    if where.statuses:
        query = query.where(t.c.status.in_([s.value for s in where.statuses]))
    zone = ZoneInfo(ctx.settings.timezone)
    since, until = (_aware(v, zone) for v in (where.since, where.until))
    if since and until and until <= since:
        raise InvalidInput("until: must be after since")
    if since is not None:
        query = query.where(t.c.created_at >= since)
    if until is not None:
        query = query.where(t.c.created_at < until)
    if cursor is not None:
        at, after = decode_cursor(cursor)
        query = query.where(or_(t.c.created_at < at, and_(t.c.created_at == at, t.c.id > after)))
    with ctx.engine.connect() as conn:
        ids = list(conn.execute(query).scalars())
    found = [ctx.runs.get(i) for i in ids[:limit]]
    more = len(ids) > limit
    return RunPageOut(
        runs=[RunOut.of(r, ctx.runs.host_results(r.id)) for r in found],
        next_cursor=encode_cursor(found[-1]) if more and found else None,
    )


def plan_changes(events: Iterable[RunEvent]) -> list[PlanChangeOut]:
    """Per host, the tasks a check-mode run found would change, and the release switch and
    restart its report predicts (a host that would change nothing is left out)."""
    changes: dict[str, list[str]] = {}
    planned: dict[str, tuple[str | None, str | None, bool | None]] = {}
    for e in events:
        if e.event == "runner_on_ok" and e.data.get("changed") and e.host:
            changes.setdefault(e.host, []).append(e.task or "?")
        report = release_report(e)
        if report is not None and report.planned_after is not None:
            planned[report.host] = (report.before, report.planned_after, report.would_restart)
    out: list[PlanChangeOut] = []
    for host in sorted(set(changes) | set(planned)):
        before, after, restart = planned.get(host, (None, None, None))
        if host not in changes and before == after and not restart:
            continue
        out.append(
            PlanChangeOut(
                host=host,
                tasks=changes.get(host, []),
                release_before=before,
                release_after=after,
                restart=restart,
            )
        )
    return out


def detail(ctx: Context, run: Run) -> RunDetailOut:
    """A run the caller was already allowed to see, with its hosts and plan changes."""
    changes = (
        plan_changes(ctx.runs.events(run.id))
        if is_plan(run) and run.kind is RunKind.DEPLOY
        else None
    )
    shown = RunDetailOut(
        **RunOut.of(run, ctx.runs.host_results(run.id)).model_dump(), changes=changes
    )
    return with_declared(ctx, shown)  # a deploy: what the fleet's stacks.yml declares now


def show_run(ctx: Context, principal: Principal, run_id: str) -> RunDetailOut:
    """One run (an id or a unique prefix of one), its hosts and, for a plan, its changes."""
    return detail(ctx, visible_run(ctx, principal, run_id, Action.RUNS_READ))


def follow_events(
    ctx: Context,
    principal: Principal,
    run_id: str,
    after_seq: int = -1,
    *,
    poll_seconds: float = 0.5,
    recover: Callable[[], object] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> Iterator[RunEvent]:
    """Yield the run's events after ``after_seq`` as they arrive, until the run ends.

    ``recover`` is called every few seconds, so a run whose owner died while we follow it
    ends as interrupted instead of being followed forever."""
    run = visible_run(ctx, principal, run_id, Action.RUNS_READ)
    seq = after_seq
    checked = monotonic()
    while True:
        finished = ctx.runs.get(run.id).status.finished
        for event in ctx.runs.events(run.id, after_seq=seq):
            seq = event.seq
            yield event
        if finished:
            return
        if recover is not None and monotonic() - checked >= RECOVER_EVERY_SECONDS:
            recover()
            checked = monotonic()
        sleep(poll_seconds)


# -- a run's log -------------------------------------------------------------------------------

# "<n>-<playbook>-<strategy>": the runner's artifact directory of the run's n-th play.
_PLAY_IDENT = re.compile(r"(\d+)-(.+)-([A-Za-z_]+)")
# Tokens and webhook secrets have a shape of their own: masked wherever they appear.
_SECRET_SHAPES = re.compile(r"\b(?:cpt_[A-Za-z0-9_-]{8,}|whsec_[A-Za-z0-9+/=]{8,})")
MASK = "********"
# Shorter values (a port, "yes") would mask ordinary words of the log.
MIN_SECRET = 4


class RunLogGone(OperationFailed):
    """The run's stdout is no longer on disk (pruned after the newest runs, or never
    written on this machine)."""


@dataclass(frozen=True)
class PlayLog:
    number: int
    playbook: str
    strategy: str
    stdout: Path


def play_logs(run_dir: Path) -> list[PlayLog]:
    """Each play's stdout under ``<run dir>/artifacts/``, in the order the plays ran."""
    found: list[PlayLog] = []
    for stdout in run_dir.glob("artifacts/*/stdout"):
        match = _PLAY_IDENT.fullmatch(stdout.parent.name)
        if match and stdout.is_file() and not stdout.is_symlink():
            number, playbook, strategy = match.groups()
            found.append(PlayLog(int(number), f"{playbook}.yml", strategy, stdout))
    return sorted(found, key=lambda p: p.number)


def scrub_log(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every known secret value, and anything shaped like a token or a
    webhook secret, masked."""
    masked = mask(text, sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True))
    return _SECRET_SHAPES.sub(MASK, str(masked))


def run_log(ctx: Context, principal: Principal, run_id: str) -> str:
    """The run's whole stdout, play by play (each under a header line), scrubbed of the
    secrets the control plane knows: the member's vault values, the vault password, the
    API token and the database password. ``RunLogGone`` when it is no longer on disk."""
    run = visible_run(ctx, principal, run_id, Action.RUNS_READ)
    plays = play_logs(ctx.data_dir / "runs" / run.id)
    if not plays:
        keep = ctx.settings.artifact_retention
        raise RunLogGone(
            f"run {run.id[:8]}: its log is gone (only the newest {keep} runs' logs are kept, "
            "on the machine that executed them)"
        )
    secrets = log_secrets(ctx, run)
    parts: list[str] = []
    for play in plays:
        parts.append(f"=== play {play.number}: {play.playbook} ({play.strategy}) ===")
        text = play.stdout.read_text(encoding="utf-8", errors="replace")
        parts.append(scrub_log(text, secrets).rstrip("\n"))
    return "\n".join(parts) + "\n"


def log_secrets(ctx: Context, run: Run) -> list[str]:
    """The secret values a log must never show."""
    s = ctx.settings
    found: list[str] = []
    if s.token is not None:
        found.append(s.token.get_secret_value())
    url = s.resolved_database_url
    password = _url_password(url)
    if password:
        found.append(password)
    password_file = s.resolved_vault_password_file
    if password_file is not None and run.member is not None:
        vault = vault_file(s.resolved_fleet, run.member)
        found += vault_values(vault, password_file)
    return found


def vault_values(vault: Path, password_file: Path) -> list[str]:
    """Every text value in a vault file, and the vault password; nothing when the file
    cannot be read or decrypted (the log is then scrubbed of what else is known)."""
    try:
        opened = open_vault(password_file)
        doc = yaml.safe_load(opened.decrypt(vault.read_bytes()))
    except (VaultUnusable, OSError, yaml.YAMLError):
        return []
    password = opened.password
    return [*_leaves(doc), *([password] if password else [])]


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield str(value)


def _url_password(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).password
    except ValueError:
        return None
