"""The board in the browser: headless Debian Chromium against a real ``controlplane serve``
on the lab fleet (nothing provisioned: the board reads figures, it deploys nothing).

A board member signs in and lands on the costs page with all four members, downloads the
month's report as PDF, and gets nothing from a runs URL. An administrator's browser in New
York opens the calendar: the page's script picks the browser's zone, and the datacenter's
times stay alongside. Screenshots of the calendar, uptime and costs pages go to the test's
tmp dir (``CP_UPDATE_SCREENSHOTS=1`` also refreshes docs/screenshots/calendar.png and
costs.png).

Starts serve: run under ``flock /tmp/cp-e2e.lock``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from controlplane.access.policy import Role
from tests.web_fixtures import (
    BOARD_LAB,
    DESKTOP,
    Screenshots,
    WebLab,
    browser_sign_in,
    start_web_lab,
    stop_web_lab,
)

# The browser, page and screenshots fixtures.
pytest_plugins = ("tests.web_fixtures",)

MEMBERS = ["amsterdam", "rotterdam", "den-haag", "utrecht"]


@pytest.fixture
def board_lab(tmp_path: Path) -> Iterator[WebLab]:
    lab = start_web_lab(tmp_path, BOARD_LAB)
    lab.tokens["board"] = lab.token(Role.BOARD, name="Bea (board)")
    lab.tokens["admin"] = lab.token(Role.ADMIN, name="Ad (operations)")
    try:
        yield lab
    finally:
        stop_web_lab(lab)


def test_the_board_reads_costs_downloads_the_pdf_and_sees_no_runs(
    board_lab: WebLab, page: Page, browser: Browser, screenshots: Screenshots
) -> None:
    lab = board_lab
    browser_sign_in(page, lab.url, lab.tokens["board"])

    # Landing: the costs page, every member with a bill, and the board's downloads.
    expect(page).to_have_url(f"{lab.url}/costs")
    expect(page.locator("table.allocation tbody tr[data-member]")).to_have_count(4)
    rows = page.locator("table.allocation tbody tr[data-member]")
    assert [r.get_attribute("data-member") for r in rows.all()] == MEMBERS
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Overview", "Uptime", "Costs"])
    screenshots(page, "costs", docs="costs")
    with page.expect_download() as download:
        page.locator(".downloads a", has_text="PDF").first.click()
    pdf = Path(download.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF"), pdf[:20]
    assert download.value.suggested_filename.endswith(".pdf")

    # Runs are not the board's: the page and a run's page answer 403 and show nothing of them.
    for path in ("/runs", "/runs/00000000-0000-0000-0000-000000000000"):
        answer = page.goto(f"{lab.url}{path}")
        assert answer is not None and answer.status == 403, path
        expect(page.locator("main h1")).to_have_text("Not allowed")
        expect(page.locator("main table")).to_have_count(0)

    page.goto(f"{lab.url}/uptime?window=24h")
    expect(page.locator("figure.chart-box svg")).to_have_count(8)
    screenshots(page, "uptime")

    # The calendar is not the board's; an administrator in New York opens it.
    context = browser.new_context(viewport=DESKTOP, timezone_id="America/New_York")  # type: ignore[arg-type]
    try:
        admin = context.new_page()
        browser_sign_in(admin, lab.url, lab.tokens["admin"])
        admin.goto(f"{lab.url}/calendar?month=2026-03")
        expect(admin).to_have_url(re.compile(r"tz=America%2FNew_York"))
        monday = admin.locator('td.day[data-date="2026-03-30"]')
        expect(monday).to_contain_text("Conflict: patch-lab-1")
        expect(monday).to_contain_text("Freeze, from 18:00 EDT")
        expect(monday).to_contain_text("Mon 30 Mar 00:00 to Tue 31 Mar 00:00 CEST")
        screenshots(admin, "calendar-new-york")
        admin.get_by_role("link", name="Show in Europe/Amsterdam").click()
        expect(admin.locator('td.day[data-date="2026-03-31"]')).to_contain_text("Freeze, all day")
        screenshots(admin, "calendar", docs="calendar")
    finally:
        context.close()
