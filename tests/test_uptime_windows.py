"""The window adapter uptime uses, over a real ``windows.yml`` read by ``controlplane.windows``
(host patch windows on weekday mornings, Europe/Amsterdam; month-end payment freezes per
member), with the lab fleet."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Fleet
from controlplane.uptime.windows import WindowCalendar, fleet_calendar, no_windows
from tests.conftest import LAB


@pytest.fixture(scope="module")
def lab() -> Fleet:
    return load_fleet(LAB)


WINDOWS = {
    "windows": [
        {
            "name": "payment-run-amsterdam",
            "kind": "freeze",
            "scope": {"member": "amsterdam"},
            "rrule": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-3,-2,-1",
            "start": "2026-01-01T00:00",
            "duration": "P1D",
        },
        *(
            {
                "name": f"patch-lab-{n}",
                "kind": "maintenance",
                "scope": {"host": f"lab-{n}"},
                "rrule": f"FREQ=WEEKLY;BYDAY={day}",
                "start": f"2026-01-0{4 + n}T05:00",
                "duration": "PT2H",
                "cutoff_minutes": 30,
            }
            for n, day in ((1, "MO"), (2, "TU"), (3, "WE"), (4, "TH"))
        ),
    ]
}


@pytest.fixture(scope="module")
def calendar(lab: Fleet, tmp_path_factory: pytest.TempPathFactory) -> WindowCalendar:
    directory: Path = tmp_path_factory.mktemp("windows")
    (directory / "windows.yml").write_text(yaml.safe_dump(WINDOWS))
    return fleet_calendar(directory, lab)


def test_an_instance_is_in_window_while_its_hosts_window_is_open(
    lab: Fleet, calendar: WindowCalendar
) -> None:
    # Monday 2 November 2026, 05:30 in Amsterdam (CET): lab-1 is being patched.
    at = datetime(2026, 11, 2, 4, 30, tzinfo=UTC)
    covered = {(i.member, i.app, i.host) for i in lab.instances() if calendar.in_window(i, at)}
    assert covered == {(i.member, i.app, i.host) for i in lab.instances() if i.host == "lab-1"}
    assert len(covered) == 4
    # 07:00 local: the window (PT2H) has ended.
    later = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    assert not any(calendar.in_window(i, later) for i in lab.instances())


def test_daylight_saving_keeps_the_window_at_local_time(
    lab: Fleet, calendar: WindowCalendar
) -> None:
    [first] = [i for i in lab.instances(member="amsterdam") if i.host == "lab-1"]
    # Monday 30 March 2026 is summer time: 05:00 local is 03:00 UTC.
    assert calendar.in_window(first, datetime(2026, 3, 30, 3, 30, tzinfo=UTC))
    assert not calendar.in_window(first, datetime(2026, 3, 30, 5, 30, tzinfo=UTC))


def test_a_freeze_is_not_a_maintenance_window(lab: Fleet, calendar: WindowCalendar) -> None:
    # Monday 30 November 2026 falls in Amsterdam's month-end payment freeze.
    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert not any(calendar.in_window(i, at) for i in lab.instances(member="amsterdam"))


def test_next_window_start_is_the_members_next_host_window(
    lab: Fleet, calendar: WindowCalendar
) -> None:
    # After Monday's lab-1 window: Tuesday 05:00 CET on lab-2, where amsterdam runs uitkering.
    at = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    assert calendar.next_window_start("amsterdam", at) == datetime(2026, 11, 3, 4, 0, tzinfo=UTC)
    # During a window, "next" is the one after it.
    during = datetime(2026, 11, 2, 4, 30, tzinfo=UTC)
    assert calendar.next_window_start("amsterdam", during) == datetime(
        2026, 11, 3, 4, 0, tzinfo=UTC
    )


def test_no_windows_adapter(lab: Fleet) -> None:
    cal = no_windows()
    at = datetime(2026, 11, 2, 4, 30, tzinfo=UTC)
    assert not cal.in_window(lab.instances()[0], at)
    assert cal.next_window_start("amsterdam", at) is None
