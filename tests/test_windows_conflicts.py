"""Conflicts: host windows lost to freezes of members on that host, and risky overlaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Fleet
from controlplane.windows.conflicts import ConflictKind, find_conflicts
from controlplane.windows.gate import Gate
from controlplane.windows.loader import load_windows
from controlplane.windows.rules import Scope, Window, WindowKind
from tests.conftest import LAB

YEAR = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def lab() -> Fleet:
    return load_fleet(LAB)


def patch(name: str, host: str, byday: str, start: datetime) -> Window:
    return Window(
        name=name,
        kind=WindowKind.MAINTENANCE,
        scope=Scope(host=host),
        rrule=f"FREQ=WEEKLY;BYDAY={byday}",
        start=start,
        duration=timedelta(hours=2),
    )


def test_lab_host_windows_inside_payment_run_freezes(lab: Fleet) -> None:
    gate = Gate(lab, load_windows(LAB, lab))
    found = find_conflicts(gate, *YEAR)
    assert found and all(c.kind is ConflictKind.WINDOW_IN_FREEZE for c in found)  # staggered
    first = found[0]
    # Wednesday 28 January 05:00 CET: lab-3's patch window, on Amsterdam's payment run day.
    assert first.window.window.name == "patch-lab-3"
    assert first.window.start == datetime(2026, 1, 28, 4, tzinfo=UTC)
    assert first.inside and first.hosts == ("lab-3",)
    # Utrecht has nothing on lab-3, so only the three members placed there are named.
    assert first.shared == ("amsterdam", "den-haag", "rotterdam")
    assert sorted(o.window.name for o in first.others) == [
        "payment-run-amsterdam",
        "payment-run-den-haag",
        "payment-run-rotterdam",
    ]
    assert "patch-lab-3" in first.message and "falls inside freeze" in first.message
    # Every reported window really lies in a payment-run day of a member on its host.
    for c in found:
        host = c.hosts[0]
        on_host = {m for m, _ in gate.placed_on(host)}
        assert set(c.shared) <= on_host
        assert all(o.start <= c.window.start < o.end for o in c.others)
    data = first.to_json()
    assert data["kind"] == "window-in-freeze" and data["window"] == "patch-lab-3"


def test_overlapping_host_windows_sharing_a_stack(lab: Fleet) -> None:
    windows = [
        patch("patch-lab-1", "lab-1", "MO", datetime(2026, 1, 5, 5)),
        patch("patch-lab-2", "lab-2", "MO", datetime(2026, 1, 5, 6)),  # overlaps 06:00-07:00
        patch("patch-lab-3", "lab-3", "TU", datetime(2026, 1, 6, 5)),
    ]
    found = find_conflicts(Gate(lab, windows), *YEAR)
    assert len(found) == 52
    c = found[0]
    assert c.kind is ConflictKind.OVERLAP and not c.inside
    assert c.hosts == ("lab-1", "lab-2")
    assert c.window.window.name == "patch-lab-1" and c.others[0].window.name == "patch-lab-2"
    # amsterdam/uitkering has both its replicas on lab-1 and lab-2.
    assert "amsterdam/uitkering" in c.shared
    assert "overlaps patch-lab-2" in c.message


def test_no_overlap_when_hosts_share_no_stack(lab: Fleet) -> None:
    members = tuple(m for m in lab.members)
    stacks = tuple(s for s in lab.stacks if s.member == "amsterdam")  # 1,2 uitk; 3,4 reint
    small = Fleet(lab.name, members, lab.hosts, lab.apps, stacks, lab.timezone)
    windows = [
        patch("patch-lab-1", "lab-1", "MO", datetime(2026, 1, 5, 5)),
        patch("patch-lab-3", "lab-3", "MO", datetime(2026, 1, 5, 5)),
    ]
    assert find_conflicts(Gate(small, windows), *YEAR) == []


def test_member_window_inside_everything_freeze(lab: Fleet) -> None:
    windows = [
        Window(
            name="release-utrecht",
            kind=WindowKind.MAINTENANCE,
            scope=Scope(member="utrecht"),
            rrule="FREQ=DAILY",
            start=datetime(2026, 12, 1, 20),
            duration=timedelta(hours=2),
        ),
        Window(
            name="year-end",
            kind=WindowKind.FREEZE,
            scope=Scope(),
            rrule="FREQ=YEARLY",
            start=datetime(2026, 12, 24),
            duration=timedelta(days=3),
        ),
    ]
    found = find_conflicts(Gate(lab, windows), *YEAR)
    assert [c.window.local_start.day for c in found] == [24, 25, 26]
    assert found[0].shared == ("everything",)
