"""The calendar, uptime and costs pages, in process (no browser): their pure parts (the
month grid, the bars, the SVG charts) and the pages over the API's app with real tokens."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from icalendar import Calendar
from sqlalchemy import Engine

from controlplane.access.policy import Principal, Role
from controlplane.schemas.uptime import AvailabilityOut
from controlplane.uptime import operations as uptime_ops
from controlplane.uptime.availability import Counts
from controlplane.uptime.probes import ProbeSample
from controlplane.uptime.store import ProbeStore
from controlplane.web.calendar import CalEvent, Day, DayEvent, day_lines, day_span, month_grid
from controlplane.web.overview import sla_state
from controlplane.web.svg import Bucket, availability_chart, axis_floor, stacked_bars
from controlplane.web.uptime import buckets
from tests.api_fixtures import OTHER, OWN, Api, build_api
from tests.web_fixtures import sign_in

AMS = ZoneInfo("Europe/Amsterdam")
NYC = ZoneInfo("America/New_York")
SVG = "{http://www.w3.org/2000/svg}"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def title(el: ET.Element) -> str:
    """The SVG element's own ``<title>`` (its tooltip)."""
    found = el.find(f"{SVG}title")
    assert found is not None and found.text is not None
    return found.text


def num(el: ET.Element, attribute: str) -> float:
    return float(el.get(attribute) or "nan")


# -- the month grid --------------------------------------------------------------------------


def freeze(name: str, start: datetime, hours: int = 24) -> CalEvent:
    return CalEvent(name, "freeze", "member x", start, start + timedelta(hours=hours))


def test_month_grid_is_whole_monday_weeks_with_23_and_25_hour_days() -> None:
    weeks = month_grid(2026, 3, [], AMS)
    days = [d for w in weeks for d in w]
    assert all(len(w) == 7 for w in weeks)
    assert days[0].day == date(2026, 2, 23) and days[-1].day == date(2026, 4, 5)
    assert [d.day for d in days if d.in_month] == [date(2026, 3, i) for i in range(1, 32)]
    by_day = {d.day: d for d in days}
    spring = by_day[date(2026, 3, 29)]
    assert spring.hours == 23 and spring.change == "23-hour day: clocks go forward"
    assert spring.start == utc(2026, 3, 28, 23) and spring.end == utc(2026, 3, 29, 22)
    assert by_day[date(2026, 3, 28)].change is None
    autumn = {d.day: d for w in month_grid(2026, 10, [], AMS) for d in w}[date(2026, 10, 25)]
    assert autumn.hours == 25 and autumn.change == "25-hour day: clocks go back"
    # Day boundaries follow the viewer's zone, not the datacenter's.
    ny = {d.day: d for w in month_grid(2026, 3, [], NYC) for d in w}
    assert ny[date(2026, 3, 8)].hours == 23 and ny[date(2026, 3, 29)].hours == 24


def test_events_land_on_every_local_day_they_overlap() -> None:
    # Amsterdam's all-day freeze on Tuesday 31 March (CEST): 30 Mar 22:00 .. 31 Mar 22:00 UTC.
    payment = freeze("payment-run", utc(2026, 3, 30, 22))
    patch = CalEvent(
        "patch-lab-1", "maintenance", "host lab-1", utc(2026, 3, 31, 3), utc(2026, 3, 31, 5)
    )
    ams = {d.day: d for w in month_grid(2026, 3, [patch, payment], AMS) for d in w}
    assert [e.event.window for e in ams[date(2026, 3, 31)].events] == ["payment-run", "patch-lab-1"]
    assert ams[date(2026, 3, 30)].events == [] and ams[date(2026, 4, 1)].events == []
    [line_freeze, line_patch] = day_lines(ams[date(2026, 3, 31)], AMS)
    assert (line_freeze.is_freeze, line_freeze.when) == (True, "all day")
    assert line_patch.when == "05:00 to 07:00 CEST"
    # In New York the same freeze runs 18:00 Monday to 18:00 Tuesday: two days.
    ny = {d.day: d for w in month_grid(2026, 3, [payment], NYC) for d in w}
    monday, tuesday = ny[date(2026, 3, 30)], ny[date(2026, 3, 31)]
    assert day_span(monday.events[0], monday, NYC) == "from 18:00 EDT"
    assert day_span(tuesday.events[0], tuesday, NYC) == "until 18:00 EDT"
    [home] = day_lines(monday, NYC, AMS)
    assert home.home_when == "Tue 31 Mar 00:00 to Wed 01 Apr 00:00 CEST"


def test_day_lines_group_alike_events_but_keep_conflicts_apart() -> None:
    start = utc(2026, 1, 28, 23)
    day = Day(date(2026, 1, 29), True, start, start + timedelta(hours=24))
    events = [freeze(f"payment-run-{m}", start) for m in ("a", "b", "c")]
    patch = CalEvent(
        "patch-lab-4",
        "maintenance",
        "host lab-4",
        utc(2026, 1, 29, 4),
        utc(2026, 1, 29, 6),
        ("patch-lab-4 falls inside freeze payment-run-a",),
    )
    day.events = [DayEvent(e, True, True) for e in [*events, patch]]
    lines = day_lines(day, AMS)
    assert [ln.windows for ln in lines] == [
        ("payment-run-a", "payment-run-b", "payment-run-c"),
        ("patch-lab-4",),
    ]
    assert lines[1].conflicts == ("patch-lab-4 falls inside freeze payment-run-a",)


# -- uptime bars and the SVG charts ----------------------------------------------------------


def test_buckets_add_up_hours_and_tell_maintenance_apart() -> None:
    start = utc(2026, 3, 1)
    hours = {
        start: Counts(10, 10, 0, 0),
        start + timedelta(hours=1): Counts(10, 5, 10, 5),  # all in a maintenance window
        start + timedelta(hours=4): Counts(10, 9, 0, 0),
    }
    bars = buckets(hours, start, start + timedelta(hours=6), 2)
    assert [(b.start.hour, b.end.hour) for b in bars] == [(0, 2), (2, 4), (4, 6)]
    first, empty, last = bars
    assert (first.value, first.sla, first.probes, first.in_window) == (0.75, 1.0, 20, 10)
    assert (empty.value, empty.probes) == (None, 0)
    assert (last.value, last.sla) == (0.9, 0.9)
    only_maintenance = buckets(hours, start + timedelta(hours=1), start + timedelta(hours=2), 1)
    assert only_maintenance[0].maintenance_only and only_maintenance[0].sla is None


def test_axis_floor_keeps_every_bar_and_the_slo_visible() -> None:
    assert axis_floor([1.0, 0.9995], 0.999) == 0.99
    assert axis_floor([0.97, None], 0.995) == 0.95
    assert axis_floor([0.2], 0.99) == 0.0
    assert axis_floor([]) == 0.999


def test_availability_chart_draws_bars_shading_and_slo_as_valid_svg() -> None:
    start = utc(2026, 3, 28, 12)
    bars = [
        Bucket(start, start + timedelta(hours=12), 1.0, 48),
        Bucket(start + timedelta(hours=12), start + timedelta(hours=24), 0.98, 48),
        Bucket(start + timedelta(hours=24), start + timedelta(hours=36), None, 0),
        Bucket(start + timedelta(hours=36), start + timedelta(hours=48), 0.5, 48, None, 48),
    ]
    window = (start + timedelta(hours=16), start + timedelta(hours=18))
    svg = availability_chart(
        bars,
        [window],
        start=start,
        end=start + timedelta(hours=48),
        zone=AMS,
        title="<amsterdam> & uitkering",
        key="a/b",
        slo=0.995,
    )
    root = ET.fromstring(str(svg))
    assert root.get("role") == "img"
    assert title(root) == "<amsterdam> & uitkering"  # escaped, then parsed
    rects = {r.get("class"): r for r in root.iter(f"{SVG}rect") if r.get("class")}
    assert set(rects) == {"maintenance", "ok", "bad", "no-data", "maintenance-only"}
    assert "below the SLO" in title(rects["bad"])
    assert "not counted" in title(rects["maintenance-only"])
    # The band sits 16 to 18 hours into the 48-hour axis (x 56..588).
    band = rects["maintenance"]
    assert num(band, "x") == pytest.approx(56 + 532 * 16 / 48, abs=0.01)
    assert num(band, "width") == pytest.approx(532 * 2 / 48, abs=0.01)
    # 04:00 UTC on the spring-forward Sunday is 06:00 CEST, not 05:00 CET.
    assert "Sun 29 Mar 06:00 to 08:00" in title(band)
    assert root.find(f"{SVG}line[@class='slo']") is not None
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "SLO 99.5 %" in labels and "0.0 %" in labels  # the 50 % bar brings the floor to 0
    desc = str(getattr(root.find(f"{SVG}desc"), "text", ""))
    assert "3 of 4 periods measured" in desc and "1 below the SLO" in desc
    assert "style=" not in str(svg)  # the pages' CSP forbids style attributes


def test_stacked_bars_stack_members_and_mark_missing_months() -> None:
    svg = stacked_bars(
        ["Jan", "Feb"],
        [("A & co", [Decimal(100), Decimal(50)]), ("B", [Decimal(300), None])],
        title="Trend",
        key="t",
    )
    root = ET.fromstring(str(svg))
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert [title(r) for r in bars] == [
        "Jan, A & co: €\u00a0100",
        "Jan, B: €\u00a0300",
    ]
    assert num(bars[1], "height") == pytest.approx(3 * num(bars[0], "height"))
    assert any(t.text == "n/a" for t in root.iter(f"{SVG}text"))


def test_hourly_series_groups_probes_by_clock_hour(engine: Engine) -> None:
    """On SQLite and PostgreSQL (the ``engine`` fixture): what the uptime charts read."""
    store = ProbeStore(engine)
    at = utc(2026, 3, 1, 10, 15)
    store.record(
        [
            ProbeSample(
                OWN,
                "uitkering",
                "lab-1",
                8101,
                at + timedelta(minutes=m),
                m != 20,
                m == 50,
                0.01,
                "1.1.0",
                None,
            )
            for m in (0, 20, 50)
        ]
        + [ProbeSample(OTHER, "uitkering", "lab-2", 8102, at, True, False, 0.01, "1.1.0", None)]
    )
    series = store.hourly_series(utc(2026, 3, 1, 10), utc(2026, 3, 1, 12), OWN)
    assert series == {
        (OWN, "uitkering"): {
            utc(2026, 3, 1, 10): Counts(2, 1, 0, 0),
            utc(2026, 3, 1, 11): Counts(1, 1, 1, 1),
        }
    }
    assert set(store.hourly_series(utc(2026, 3, 1, 10))) == {
        (OWN, "uitkering"),
        (OTHER, "uitkering"),
    }
    assert store.hourly_series(utc(2026, 3, 1, 11), utc(2026, 3, 1, 11)) == {}


# -- the pages -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    built = build_api(tmp_path_factory.mktemp("pages"))
    yield built
    built.client.close()
    built.ctx.close()


def signed_in(api: Api, who: str) -> TestClient:
    browser = TestClient(api.app)
    assert sign_in(browser, api.tokens[who]).status_code == 303
    return browser


def day_cells(html: str) -> dict[str, str]:
    cells = re.findall(r'<td class="day[^"]*" data-date="([0-9-]+)">(.*?)</td>', html, re.S)
    return dict(cells)


def test_calendar_shows_the_payment_run_on_the_last_three_working_days(api: Api) -> None:
    engineer = signed_in(api, "engineer")
    page = engineer.get("/calendar", params={"month": "2026-04", "tz": "Europe/Amsterdam"})
    assert page.status_code == 200
    cells = day_cells(page.text)
    frozen = sorted(d for d, html in cells.items() if f"payment-run-{OWN}" in html)
    # April 2026 ends on a Thursday: Tuesday 28 to Thursday 30. The grid starts on Monday
    # 30 March, which shows March's last two (Friday 27 March is in the week before).
    assert frozen == ["2026-03-30", "2026-03-31", "2026-04-28", "2026-04-29", "2026-04-30"]
    assert "Freeze, all day" in cells["2026-04-29"]
    # Only what gates their own member: no other member's freeze, no other feed.
    assert f"payment-run-{OTHER}" not in page.text and f"/calendar/{OTHER}.ics" not in page.text
    assert f'href="/calendar/{OWN}.ics"' in page.text


def test_calendar_marks_conflicts_in_text_and_shows_both_zones(api: Api) -> None:
    admin = signed_in(api, "admin")
    page = admin.get("/calendar", params={"month": "2026-03", "tz": "America/New_York"})
    assert page.status_code == 200
    cells = day_cells(page.text)
    # Monday 30 March: lab-1's patch window falls in the payment-run freezes.
    assert "Conflict: patch-lab-1" in cells["2026-03-30"]
    assert "falls inside freeze" in cells["2026-03-30"]
    assert "Conflict" not in cells["2026-03-16"]
    assert "Window, 00:00 to 02:00 EDT" in cells["2026-03-16"]  # 05:00 CET in New York
    assert "Mon 16 Mar 05:00 to 07:00 CET" in cells["2026-03-16"]  # and at the datacenter
    assert "23-hour day: clocks go forward" in cells["2026-03-08"]


def test_calendar_feed_downloads_with_the_session_only_for_own_members(api: Api) -> None:
    engineer = signed_in(api, "engineer")
    feed = engineer.get(f"/calendar/{OWN}.ics")
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    cal = Calendar.from_ical(feed.content)
    assert any("payment-run-amsterdam" in str(e["uid"]) for e in cal.walk("VEVENT"))
    assert engineer.get(f"/calendar/{OTHER}.ics").status_code == 404
    assert (
        TestClient(api.app).get(f"/calendar/{OWN}.ics", follow_redirects=False).status_code == 303
    )
    board = signed_in(api, "board")
    assert board.get("/calendar").status_code == 403


def test_calendar_bad_input_is_one_line_422(api: Api) -> None:
    admin = signed_in(api, "admin")
    for params, text in (
        ({"tz": "Mars/Olympus"}, "tz: &#39;Mars/Olympus&#39; is not a time zone"),
        ({"month": "2026-13"}, "month: &#39;2026-13&#39; is not a month"),
    ):
        page = admin.get("/calendar", params=params)
        assert page.status_code == 422 and text in page.text, page.text


def test_uptime_page_shows_the_operations_figures_per_role(api: Api) -> None:
    now = datetime.now(UTC)
    store = ProbeStore(api.ctx.engine)
    samples = [
        ProbeSample(
            i.member,
            i.app,
            i.host,
            i.port,
            now - timedelta(minutes=m),
            m != 30,
            False,
            0.01,
            "1.1.0",
            None,
        )
        for i in api.ctx.fleet.instances()
        for m in (5, 30, 90)
    ]
    store.record(samples)
    board = signed_in(api, "board")
    page = board.get("/uptime", params={"window": "7d"})
    assert page.status_code == 200
    board_principal = Principal(name="board", role=Role.BOARD)
    rows = uptime_ops.availability(api.ctx, board_principal, None, "24h", now=now)
    assert {r.member for r in rows} == {"amsterdam", "rotterdam", "den-haag", "utrecht"}
    [figure] = {f"{r.availability * 100:.2f} %" for r in rows if r.availability is not None}
    assert figure == "66.67 %"  # two of three probes healthy
    table = page.text.split('<h2 id="charts">')[0]
    # Each app's row: 24h, 7d, 30d, and the 30-day SLA figure (no probe was in a window).
    assert table.count(f'<td class="num">{figure}</td>') == 8 * 4
    assert page.text.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart"') == 8
    assert 'class="maintenance"' in page.text  # a week always has the lab's patch windows
    engineer = signed_in(api, "engineer")
    mine = engineer.get("/uptime").text
    assert "Gemeente Amsterdam" in mine and "Gemeente Rotterdam" not in mine
    assert mine.count('class="chart"') == 2
    assert engineer.get("/uptime", params={"window": "2d"}).status_code == 422


def test_costs_page_and_downloads_for_the_board_only(api: Api) -> None:
    board = signed_in(api, "board")
    page = board.get("/costs", params={"period": "2026-10"})
    assert page.status_code == 200
    assert re.findall(r'<tr data-member="([a-z-]+)">', page.text) == [
        "amsterdam",
        "rotterdam",
        "den-haag",
        "utrecht",
    ]
    for href in ("/costs/2026-10/report.pdf", "/costs/2026-Q4/report.csv"):
        assert f'href="{href}"' in page.text
    csv = board.get("/costs/2026-10/report.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv.headers["content-disposition"] and "amsterdam" in csv.text.lower()
    assert board.get("/costs", params={"period": "2026-13"}).status_code == 422
    assert board.get("/costs/2026-10/report.doc").status_code in (404, 422)
    engineer = signed_in(api, "engineer")
    assert engineer.get("/costs").status_code == 403
    assert engineer.get("/costs/2026-10/report.csv").status_code == 403


def test_the_slo_state_never_says_met_beside_an_overspent_budget() -> None:
    # Every failure fell inside a maintenance window: the SLA figure is perfect, but the
    # budget (reckoned on raw availability, as the alerts are) is overspent.
    row = AvailabilityOut(
        member="amsterdam",
        app="uitkering",
        window="30d",
        slo=0.995,
        probes=1000,
        good=980,
        in_window=20,
        good_in_window=0,
        availability=0.98,
        sla_availability=1.0,
        error_budget_remaining=-3.0,
        burn_rate=4.0,
    )
    assert sla_state(row)[0] == "below SLO"
    met = row.model_copy(update={"availability": 0.999, "error_budget_remaining": 0.8})
    assert sla_state(met)[0] == "meets SLO"
    assert sla_state(None)[0] == "no data yet"
