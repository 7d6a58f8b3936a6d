"""The deployment gate: windows, freezes, cutoffs, scopes, emergency override, next opening."""

from __future__ import annotations

import dataclasses
import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.errors import AppNotFound, GateClosed, InvalidInput, MemberNotFound, Refused
from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import DeployPolicy, Fleet, Member
from controlplane.windows.gate import Decision, Gate, Reason, Verdict
from controlplane.windows.loader import load_windows
from controlplane.windows.rules import Scope, Window, WindowKind
from tests.conftest import LAB


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture(scope="module")
def lab() -> Fleet:
    return load_fleet(LAB)


def strict(fleet: Fleet) -> Fleet:
    """The lab with every member window-required."""
    members = tuple(
        Member(slug=m.slug, name=m.name, slo=m.slo, deploy_policy=DeployPolicy.WINDOW_REQUIRED)
        for m in fleet.members
    )
    return dataclasses.replace(fleet, members=members)


@pytest.fixture(scope="module")
def strict_lab(lab: Fleet) -> Fleet:
    return strict(lab)


def win(name: str, scope: Scope, rrule: str, start: datetime, hours: float, **kw: Any) -> Window:
    return Window(
        name=name,
        kind=kw.pop("kind", WindowKind.MAINTENANCE),
        scope=scope,
        rrule=rrule,
        start=start,
        duration=timedelta(hours=hours),
        **kw,
    )


def freeze(name: str, scope: Scope, rrule: str, start: datetime, hours: float) -> Window:
    return win(name, scope, rrule, start, hours, kind=WindowKind.FREEZE)


# Tuesday evenings 19:00-23:00 local, last 30 minutes no new work.
AMS_DEPLOY = win(
    "deploy-amsterdam",
    Scope(member="amsterdam"),
    "FREQ=WEEKLY;BYDAY=TU",
    datetime(2026, 1, 6, 19),
    4,
    cutoff_minutes=30,
)
PAYMENT = freeze(
    "payment-run-amsterdam",
    Scope(member="amsterdam"),
    "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-3,-2,-1",
    datetime(2026, 1, 1),
    24,
)


# -- window-required -------------------------------------------------------------------------


def test_inside_a_window_is_allowed_until_its_cutoff(strict_lab: Fleet) -> None:
    gate = Gate(strict_lab, [AMS_DEPLOY])
    d = gate.check_member("amsterdam", None, utc(2026, 1, 13, 19))  # 20:00 CET, Tuesday
    assert d.allowed and d.verdict is Verdict.ALLOWED and d.reason is Reason.IN_WINDOW
    assert [o.window.name for o in d.windows] == ["deploy-amsterdam"]
    assert d.closes_at == utc(2026, 1, 13, 21, 30)  # 22:30 CET: the cutoff
    assert d.next_allowed == d.at
    assert "deploy-amsterdam" in d.message
    assert d.hosts == ("lab-1", "lab-2", "lab-3", "lab-4")


def test_outside_a_window_is_refused_with_the_next_opening(strict_lab: Fleet) -> None:
    gate = Gate(strict_lab, [AMS_DEPLOY])
    d = gate.check_member("amsterdam", "uitkering", utc(2026, 1, 14, 10))  # Wednesday
    assert not d.allowed and d.reason is Reason.NO_WINDOW
    assert d.next_allowed == utc(2026, 1, 20, 18)  # next Tuesday 19:00 CET
    assert "uitkering on lab-1" in d.message and "next opening 2026-01-20 19:00 CET" in d.message
    assert d.closes_at is None


def test_after_the_cutoff_no_new_work_starts(strict_lab: Fleet) -> None:
    gate = Gate(strict_lab, [AMS_DEPLOY])
    just_before = gate.check_member("amsterdam", None, utc(2026, 1, 13, 21, 29))
    at_cutoff = gate.check_member("amsterdam", None, utc(2026, 1, 13, 21, 30))
    assert just_before.allowed
    assert not at_cutoff.allowed and at_cutoff.reason is Reason.CUTOFF
    assert at_cutoff.windows[0].window.name == "deploy-amsterdam"  # still open, past cutoff
    assert at_cutoff.next_allowed == utc(2026, 1, 20, 18)
    assert "past its cutoff" in at_cutoff.message


def test_a_freeze_beats_a_window(strict_lab: Fleet) -> None:
    # Tuesday 31 March 2026 is one of the last three working days and a deploy evening.
    gate = Gate(strict_lab, [AMS_DEPLOY, PAYMENT])
    d = gate.check_member("amsterdam", None, utc(2026, 3, 31, 18))  # 20:00 CEST
    assert not d.allowed and d.reason is Reason.FREEZE
    assert [o.window.name for o in d.freezes] == ["payment-run-amsterdam"]
    assert [o.window.name for o in d.windows] == ["deploy-amsterdam"]  # open, but frozen
    assert "frozen by payment-run-amsterdam" in d.message
    # The freeze ends at midnight; the next Tuesday evening is 7 April, 19:00 CEST.
    assert d.next_allowed == utc(2026, 4, 7, 17)


def test_emergency_override_is_allowed_and_noted(strict_lab: Fleet) -> None:
    gate = Gate(strict_lab, [AMS_DEPLOY, PAYMENT])
    now = utc(2026, 3, 31, 18)
    d = gate.check_member("amsterdam", "uitkering", now, emergency_reason="CVE-2026-1234 hotfix")
    assert d.allowed and d.reason is Reason.EMERGENCY
    assert d.overridden is Reason.FREEZE
    assert d.emergency_reason == "CVE-2026-1234 hotfix"
    assert [o.window.name for o in d.freezes] == ["payment-run-amsterdam"]
    assert d.next_allowed == now
    assert "EMERGENCY OVERRIDE (CVE-2026-1234 hotfix)" in d.message
    assert d.to_json()["overridden"] == "freeze"
    # An emergency when the gate was open anyway is noted but overrides nothing.
    calm = gate.check_member("amsterdam", None, utc(2026, 1, 13, 19), emergency_reason="drill")
    assert calm.reason is Reason.IN_WINDOW and calm.overridden is None
    assert calm.emergency_reason == "drill"
    with pytest.raises(InvalidInput, match="emergency_reason"):
        gate.check_member("amsterdam", None, now, emergency_reason="   ")


def test_host_windows_must_cover_every_touched_host(strict_lab: Fleet) -> None:
    # amsterdam/uitkering runs on lab-1 and lab-2.
    w1 = win("patch-lab-1", Scope(host="lab-1"), "FREQ=WEEKLY;BYDAY=MO", datetime(2026, 1, 5, 5), 2)
    w2 = win("patch-lab-2", Scope(host="lab-2"), "FREQ=WEEKLY;BYDAY=MO", datetime(2026, 1, 5, 6), 2)
    gate = Gate(strict_lab, [w1, w2])
    only_one = gate.check_member("amsterdam", "uitkering", utc(2026, 1, 12, 4, 30))  # 05:30
    assert not only_one.allowed and "uitkering on lab-2" in only_one.message
    assert only_one.next_allowed == utc(2026, 1, 12, 5)  # 06:00: both open
    both = gate.check_member("amsterdam", "uitkering", utc(2026, 1, 12, 5, 30))
    assert both.allowed and both.closes_at == utc(2026, 1, 12, 6)  # lab-1's window ends
    # The whole member also touches lab-3 and lab-4, which have no window.
    whole = gate.check_member("amsterdam", None, utc(2026, 1, 12, 5, 30))
    assert not whole.allowed and whole.next_allowed is None
    assert "no opening within 366 days" in whole.message


def test_an_app_window_covers_only_that_app(strict_lab: Fleet) -> None:
    w = win(
        "uitkering-release",
        Scope(member="amsterdam", app="uitkering"),
        "FREQ=DAILY",
        datetime(2026, 1, 1, 20),
        2,
    )
    gate = Gate(strict_lab, [w])
    now = utc(2026, 1, 15, 19, 30)
    assert gate.check_member("amsterdam", "uitkering", now).allowed
    assert not gate.check_member("amsterdam", "reintegratie", now).allowed
    assert not gate.check_member("amsterdam", None, now).allowed
    assert not gate.check_member("rotterdam", "uitkering", now).allowed


def test_every_scope_must_allow(strict_lab: Fleet) -> None:
    everything = win("big-window", Scope(), "FREQ=DAILY", datetime(2026, 1, 1, 18), 6)
    host_freeze = freeze(
        "lab-3-disk", Scope(host="lab-3"), "FREQ=DAILY;COUNT=1", datetime(2026, 1, 15, 0), 48
    )
    gate = Gate(strict_lab, [everything, host_freeze])
    now = utc(2026, 1, 15, 19)
    # amsterdam/reintegratie touches lab-3: frozen; amsterdam/uitkering does not.
    d = gate.check_member("amsterdam", "reintegratie", now)
    assert not d.allowed and d.freezes[0].window.name == "lab-3-disk"
    assert d.next_allowed == utc(2026, 1, 17, 17)  # freeze over at midnight; window at 18:00
    assert gate.check_member("amsterdam", "uitkering", now).allowed
    assert not gate.check_host("lab-3", now).allowed
    assert gate.check_host("lab-1", now).allowed


def test_app_freeze_blocks_only_changes_touching_that_app(lab: Fleet) -> None:
    f = freeze(
        "uitkering-audit",
        Scope(member="amsterdam", app="uitkering"),
        "FREQ=DAILY",
        datetime(2026, 1, 1),
        24,
    )
    gate = Gate(lab, [f])
    now = utc(2026, 1, 15, 12)
    assert not gate.check_member("amsterdam", "uitkering", now).allowed
    assert not gate.check_member("amsterdam", None, now).allowed
    assert gate.check_member("amsterdam", "reintegratie", now).allowed
    assert gate.check_member("rotterdam", "uitkering", now).allowed


# -- avoid-freezes (the lab's policy) ------------------------------------------------------------


def test_avoid_freezes_needs_no_window(lab: Fleet) -> None:
    gate = Gate(lab, load_windows(LAB, lab))
    d = gate.check_member("amsterdam", None, utc(2026, 1, 20, 12))
    assert d.allowed and d.reason is Reason.NO_FREEZE and d.policy is DeployPolicy.AVOID_FREEZES
    assert d.closes_at == utc(2026, 1, 27, 23)  # the payment run starts 28 Jan 00:00 CET
    frozen = gate.check_member("amsterdam", "reintegratie", utc(2026, 1, 28, 12))
    assert not frozen.allowed and frozen.reason is Reason.FREEZE
    # Three frozen days in a row: the next opening is Saturday 31 January, 00:00 CET.
    assert frozen.next_allowed == utc(2026, 1, 30, 23)


def test_host_work_is_gated_by_freezes_of_members_placed_on_it(lab: Fleet) -> None:
    utrecht_only = freeze(
        "utrecht-audit", Scope(member="utrecht"), "FREQ=DAILY;COUNT=1", datetime(2026, 1, 12), 24
    )
    windows = [w for w in load_windows(LAB, lab) if not w.is_freeze] + [utrecht_only]
    gate = Gate(lab, windows)
    monday = utc(2026, 1, 12, 4, 30)  # 05:30 CET, inside patch-lab-1
    d = gate.check_host("lab-1", monday)  # utrecht runs on lab-1
    assert not d.allowed and d.freezes[0].window.name == "utrecht-audit"
    assert d.policy is DeployPolicy.WINDOW_REQUIRED and d.host == "lab-1"
    assert d.next_allowed == utc(2026, 1, 19, 4)
    # utrecht runs nothing on lab-3, so its freeze does not stop lab-3's Wednesday window.
    assert gate.check_host("lab-3", utc(2026, 1, 14, 4, 30)).allowed
    assert not gate.check_host("lab-3", utc(2026, 1, 14, 12)).allowed  # no window open


def test_lab_patch_windows_are_staggered(lab: Fleet) -> None:
    gate = Gate(lab, load_windows(LAB, lab))
    monday = utc(2026, 1, 12, 4, 30)
    allowed = [h.name for h in lab.hosts if gate.check_host(h.name, monday).allowed]
    assert allowed == ["lab-1"]


# -- API edges -------------------------------------------------------------------------------


def test_bad_calls(lab: Fleet) -> None:
    gate = Gate(lab, [])
    with pytest.raises(InvalidInput, match="timezone-aware"):
        gate.check_member("amsterdam", None, datetime(2026, 1, 1))
    with pytest.raises(MemberNotFound):
        gate.check_member("leiden", None, utc(2026, 1, 1))
    with pytest.raises(AppNotFound):
        gate.check_member("amsterdam", "parkeren", utc(2026, 1, 1))
    assert gate.check_member("amsterdam", None, utc(2026, 1, 1)).allowed  # no windows at all


def test_refused_decision_raises_gate_closed(strict_lab: Fleet) -> None:
    d = Gate(strict_lab, [AMS_DEPLOY]).check_member("utrecht", None, utc(2026, 1, 1))
    with pytest.raises(GateClosed) as info:
        d.raise_if_refused()
    assert isinstance(info.value, Refused) and info.value.decision is d
    data = d.to_json()
    assert data["status"] == "refused" and data["reason"] == "no-window"
    assert data["next_allowed"] is None


def test_decisions_reuse_the_expansion(strict_lab: Fleet) -> None:
    gate = Gate(strict_lab, [AMS_DEPLOY, PAYMENT])
    gate.check_member("amsterdam", None, utc(2026, 6, 2, 18))
    expanded = len(gate._expansions["payment-run-amsterdam"].starts)
    assert expanded < 30  # only up to June plus one chunk, not a year ahead
    for day in range(1, 20):
        gate.check_member("amsterdam", None, utc(2026, 6, day, 12))
    assert len(gate._expansions["payment-run-amsterdam"].starts) == expanded


# -- property: next_allowed is the first allowed instant ------------------------------------------


@functools.cache
def strict_gate() -> Gate:
    windows = [
        AMS_DEPLOY,
        PAYMENT,
        win(
            "patch-lab-1",
            Scope(host="lab-1"),
            "FREQ=WEEKLY;BYDAY=MO,TH",
            datetime(2026, 1, 5, 2, 30),
            3,
            cutoff_minutes=20,
        ),
        win(
            "patch-lab-2",
            Scope(host="lab-2"),
            "FREQ=WEEKLY;BYDAY=MO,TH",
            datetime(2026, 1, 5, 3, 30),
            3,
        ),
        win(
            "everything-sunday",
            Scope(),
            "FREQ=WEEKLY;BYDAY=SU",
            datetime(2026, 1, 4, 1),
            5,
            cutoff_minutes=60,
        ),
        freeze(
            "lab-2-hw",
            Scope(host="lab-2"),
            "FREQ=MONTHLY;BYMONTHDAY=15",
            datetime(2026, 1, 15, 4),
            5,
        ),
        freeze(
            "uitkering-audit",
            Scope(member="amsterdam", app="uitkering"),
            "FREQ=MONTHLY;BYMONTHDAY=1,2",
            datetime(2026, 1, 1, 2),
            30,
        ),
    ]
    return Gate(strict(load_fleet(LAB)), windows)


def brute_force(gate: Gate, app: str | None, now: datetime) -> bool:
    """The rules, evaluated naively from every occurrence around ``now``."""
    fleet = gate.fleet
    units = {(i.app, i.host) for i in fleet.instances("amsterdam", app)}
    around = gate.occurrences_between(now - timedelta(days=3), now + timedelta(seconds=1))
    live = [o for o in around if o.start <= now < o.end]

    def touches(s: Scope) -> bool:
        if s.host is not None:
            return any(h == s.host for _, h in units)
        if s.member is None:
            return True
        return s.member == "amsterdam" and (s.app is None or any(a == s.app for a, _ in units))

    if any(o.window.is_freeze and touches(o.window.scope) for o in live):
        return False

    def covers(s: Scope, a: str, h: str) -> bool:
        if s.host is not None:
            return s.host == h
        return s.member in (None, "amsterdam") and s.app in (None, a)

    return all(
        any(
            not o.window.is_freeze and now < o.cutoff_at and covers(o.window.scope, a, h)
            for o in live
        )
        for a, h in units
    )


APPS = st.sampled_from([None, "uitkering", "reintegratie"])
MINUTES = st.integers(min_value=0, max_value=366 * 24 * 60)


@settings(max_examples=300, deadline=None)
@given(minutes=MINUTES, app=APPS)
def test_gate_agrees_with_brute_force(minutes: int, app: str | None) -> None:
    gate = strict_gate()
    now = utc(2026, 1, 1) + timedelta(minutes=minutes)
    assert gate.check_member("amsterdam", app, now).allowed == brute_force(gate, app, now)


@settings(max_examples=150, deadline=None)
@given(minutes=MINUTES, app=APPS)
def test_next_allowed_is_the_first_allowed_instant(minutes: int, app: str | None) -> None:
    gate = strict_gate()
    now = utc(2026, 1, 1) + timedelta(minutes=minutes)
    d: Decision = gate.check_member("amsterdam", app, now)
    if d.allowed or d.next_allowed is None:
        return
    assert d.next_allowed > now
    assert gate.check_member("amsterdam", app, d.next_allowed).allowed
    assert not gate.check_member("amsterdam", app, d.next_allowed - timedelta(seconds=1)).allowed
    span = d.next_allowed - now  # nothing in between was open: sample a few instants
    for k in range(1, 8):
        assert not gate.check_member("amsterdam", app, now + span * k / 8).allowed
