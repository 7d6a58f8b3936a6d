"""The overview: each member's apps, their instances' live version and health, 30-day SLA
against the SLO with the error budget left, the next maintenance window and freeze, and
this month's cost share so far.

``/`` shows every member the caller sees in one table (one member only: that member's
page); ``/members/{member}`` shows one member. Each has a fragment (``/live``,
``/members/{member}/live``) the page's script fetches every ``REFRESH_SECONDS``: it probes
the instances again, so health is live without reloading the page. A part the caller's
role may not see (costs for an engineer, windows for the board) is left out, not refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Path
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from controlplane.access.policy import Action
from controlplane.clock import utc_now
from controlplane.costs import operations as costs_ops
from controlplane.deploy.provision import health_out
from controlplane.fleet.operations import show_fleet
from controlplane.schemas.runs import InstanceHealthOut
from controlplane.schemas.uptime import AvailabilityOut
from controlplane.schemas.windows import OccurrenceOut
from controlplane.uptime import operations as uptime_ops
from controlplane.uptime.probes import probe_all
from controlplane.web.framework import Page, needs, page_router, render
from controlplane.windows import operations as windows_ops

router = page_router()

REFRESH_SECONDS = 10
COUNTDOWN_WITHIN = timedelta(hours=24)
LOOKAHEAD = timedelta(days=45)  # a monthly freeze is always found

MemberSlug = Annotated[str, Path(max_length=63)]


# -- the pure part ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Upcoming:
    """The next (or current) occurrence of a window kind for a member."""

    window: str
    kind: str
    start: datetime
    end: datetime
    active: bool
    countdown: bool  # starts within COUNTDOWN_WITHIN: show a live countdown
    seconds_to_start: float


def next_of_kind(occurrences: Iterable[OccurrenceOut], kind: str, now: datetime) -> Upcoming | None:
    """The occurrence of ``kind`` going on at ``now``, else the next one to start. Back-to-
    back occurrences of the same window read as one span: the payment run's three freeze
    days are one freeze from the first morning to the last midnight."""
    spans = sorted(
        (datetime.fromisoformat(o.start_utc), datetime.fromisoformat(o.end_utc), o.window)
        for o in occurrences
        if o.kind == kind
    )
    ends_of: dict[tuple[str, datetime], datetime] = {}
    for start, end, window in spans:
        ends_of[(window, start)] = end
    current = [(s, e, w) for s, e, w in spans if e > now]
    if not current:
        return None
    # What is on now wins; otherwise what starts first.
    start, end, window = min(current, key=lambda span: (span[0] > now, span[0]))
    while (window, end) in ends_of:  # the next occurrence of this window starts as it ends
        end = ends_of[(window, end)]
    active = start <= now
    soon = not active and start - now <= COUNTDOWN_WITHIN
    return Upcoming(window, kind, start, end, active, soon, (start - now).total_seconds())


@dataclass(frozen=True)
class Health:
    """A set of instances' probe results in one word, with its icon and style."""

    label: str
    icon: str
    css: str
    healthy: int
    total: int


def health_of(instances: Sequence[InstanceHealthOut]) -> Health:
    healthy = sum(1 for i in instances if i.status == "healthy")
    total = len(instances)
    if total == 0:
        return Health("no instances", "-", "status-idle", 0, 0)
    if healthy == total:
        return Health("healthy", "✓", "status-ok", healthy, total)
    if healthy == 0:
        return Health("down", "✗", "status-bad", healthy, total)
    return Health("degraded", "!", "status-warn", healthy, total)


def sla_state(row: AvailabilityOut | None) -> tuple[str, str, str]:
    """(label, icon, css) of an app's standing against its SLO.

    Judged on the error budget, which is reckoned from the raw availability as the alerts
    are, so the state never says "meets SLO" beside an overspent budget."""
    if row is None or row.error_budget_remaining is None:
        return ("no data yet", "-", "status-idle")
    if row.error_budget_remaining >= 0:
        return ("meets SLO", "✓", "status-ok")
    return ("below SLO", "✗", "status-bad")


def percent(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f} %"


@dataclass
class AppView:
    app: str
    declared: str
    instances: list[InstanceHealthOut]
    health: Health
    sla: AvailabilityOut | None
    sla_state: tuple[str, str, str]

    @property
    def budget_meter(self) -> float:
        left = self.sla.error_budget_remaining if self.sla else None
        return 0.0 if left is None else max(0.0, min(1.0, left))


@dataclass
class MemberView:
    slug: str
    name: str
    slo: float
    apps: list[AppView] = field(default_factory=list)
    maintenance: Upcoming | None = None
    freeze: Upcoming | None = None
    cost: str | None = None
    currency: str = ""

    @property
    def health(self) -> Health:
        return health_of([i for a in self.apps for i in a.instances])

    @property
    def worst_sla(self) -> AppView | None:
        known = [(a.sla.sla_availability, a) for a in self.apps if a.sla is not None]
        measured = [(value, a) for value, a in known if value is not None]
        return min(measured, key=lambda pair: pair[0])[1] if measured else None


def this_month(now: datetime, zone: ZoneInfo) -> str:
    return now.astimezone(zone).strftime("%Y-%m")


# -- gathering (operations, with the caller's principal) -------------------------------------


def member_views(page: Page, slugs: Sequence[str], *, now: datetime) -> list[MemberView]:
    """Everything the overview shows for ``slugs`` (members the caller sees), in one probe
    round and one read of each store."""
    ctx, principal = page.ctx, page.principal
    fleet = ctx.fleet
    instances = [i for s in slugs for i in fleet.instances(member=s)]
    probes = probe_all(instances, timeout=ctx.settings.probe_timeout_seconds)
    health = [health_out(p) for p in probes]
    sla: dict[tuple[str, str], AvailabilityOut] = {}
    if page.may(Action.UPTIME_READ):
        for row in uptime_ops.availability(ctx, principal, None, "30d", now=now):
            sla[(row.member, row.app)] = row
    bills: dict[str, str] = {}
    currency = ""
    if page.may(Action.COSTS_READ):
        zone = ZoneInfo(ctx.settings.timezone)
        allocation = costs_ops.allocate(ctx, principal, this_month(now, zone), now=now)
        bills = {m.member: m.total for m in allocation.members}
        currency = allocation.currency
    views: list[MemberView] = []
    for slug in slugs:
        member = fleet.member(slug)
        view = MemberView(slug, member.name, member.slo, cost=bills.get(slug), currency=currency)
        for stack_app in fleet.stack(slug).apps:
            mine = [h for h in health if h.member == slug and h.app == stack_app.app]
            found = sla.get((slug, stack_app.app))
            view.apps.append(
                AppView(
                    stack_app.app, stack_app.version, mine, health_of(mine), found, sla_state(found)
                )
            )
        if page.may(Action.WINDOWS_READ):
            occurrences = windows_ops.list_occurrences(
                ctx, principal, slug, now, now + LOOKAHEAD, now=now
            ).occurrences
            view.maintenance = next_of_kind(occurrences, "maintenance", now)
            view.freeze = next_of_kind(occurrences, "freeze", now)
        views.append(view)
    return views


def visible_members(page: Page) -> list[str]:
    return [m.member for m in show_fleet(page.ctx, page.principal).members]


def _context(page: Page, views: list[MemberView], **extra: Any) -> dict[str, Any]:
    return {
        "views": views,
        "show_uptime": page.may(Action.UPTIME_READ),
        "show_windows": page.may(Action.WINDOWS_READ),
        "show_costs": page.may(Action.COSTS_READ),
        "show_runs": page.may(Action.RUNS_READ),
        "refresh_seconds": REFRESH_SECONDS,
        "percent": percent,
        "now": utc_now(),
        **extra,
    }


# -- pages -----------------------------------------------------------------------------------


@router.get("/")
def home(page: Annotated[Page, needs(Action.FLEET_READ)]) -> Response:
    slugs = visible_members(page)
    if len(slugs) == 1:
        return RedirectResponse(f"/members/{slugs[0]}", status_code=303)
    views = member_views(page, slugs, now=utc_now())
    return render(page, "web/overview.html", _context(page, views, title="Overview"))


@router.get("/live")
def home_live(page: Annotated[Page, needs(Action.FLEET_READ)]) -> HTMLResponse:
    views = member_views(page, visible_members(page), now=utc_now())
    return render(page, "web/_overview_table.html", _context(page, views))


@router.get("/members/{member}")
def member_page(
    member: MemberSlug, page: Annotated[Page, needs(Action.FLEET_READ)]
) -> HTMLResponse:
    [view] = member_views(page, [page.ctx.fleet.member(member).slug], now=utc_now())
    return render(
        page, "web/member.html", _context(page, [view], view=view, title=f"{view.name} overview")
    )


@router.get("/members/{member}/live")
def member_live(
    member: MemberSlug, page: Annotated[Page, needs(Action.FLEET_READ)]
) -> HTMLResponse:
    [view] = member_views(page, [page.ctx.fleet.member(member).slug], now=utc_now())
    return render(page, "web/_member_apps.html", _context(page, [view], view=view))
