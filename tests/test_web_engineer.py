"""An engineer's afternoon in the browser: headless Debian Chromium against a real
``controlplane serve`` on the lab fleet (amsterdam provisioned by the real CLI).

Signs in with an engineer token, sees the member's instances healthy on the overview,
launches a plan (check mode) after reading the gate's decision, watches its log stream
live to the end, finds the payment-run freeze on the calendar, and signs out. Screenshots
of each page go to the test's tmp dir (``CP_UPDATE_SCREENSHOTS=1`` also refreshes
docs/screenshots/).

Starts Ansible and serve: run under ``flock /tmp/cp-e2e.lock``.
"""

from __future__ import annotations

import re
import subprocess
from datetime import date, datetime
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect

from tests.test_serve_service import CLI
from tests.web_fixtures import PHONE, Screenshots, WebLab, browser_sign_in

# The browser, page, screenshots and engineer_lab fixtures.
pytest_plugins = ("tests.web_fixtures",)

MEMBER = "amsterdam"
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def valid(month: date, day: int) -> bool:
    try:
        date(month.year, month.month, day)
    except ValueError:
        return False
    return True


def test_an_engineer_signs_in_sees_health_follows_a_plan_and_signs_out(
    engineer_lab: WebLab, page: Page, screenshots: Screenshots
) -> None:
    lab = engineer_lab
    page.goto(f"{lab.url}/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    screenshots(page, "login", docs="login")
    browser_sign_in(page, lab.url, lab.tokens["engineer"])
    provisioned = lab.provisioned()
    assert provisioned is not None and provisioned["status"] == "ok"
    # One probe round stored now, so the SLA figures have data whatever serve's scheduler
    # has done yet.
    probed = subprocess.run(
        [CLI, "uptime", "--member", MEMBER, "--probe", "--json"],
        env=lab.env,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert probed.returncode == 0, probed.stderr
    page.reload()  # what the instances say now

    # The overview: only their member, every instance probed healthy on its declared version.
    expect(page).to_have_url(f"{lab.url}/members/{MEMBER}")
    apps = page.locator("#member-apps tbody tr")
    expect(apps).to_have_count(2)
    for row in apps.all():
        expect(row.locator("th .status")).to_have_text(re.compile(r"healthy \((\d)/\1\)"))
        expect(row).to_contain_text("meets SLO")
        assert "not the declared version" not in row.inner_text()
    expect(page.locator("#next-freeze + p")).to_contain_text("payment-run-amsterdam")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Overview", "Runs", "Calendar", "Uptime"])
    screenshots(page, "overview", docs="overview")
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    screenshots(page, "overview-phone")
    page.set_viewport_size({"width": 1280, "height": 900})

    # A plan: the gate's decision first, then launch, then the run's page streams its log.
    page.get_by_role("link", name="Plan or deploy…").click()
    page.get_by_label("App", exact=True).select_option("uitkering")
    page.get_by_label("Plan (check mode, changes nothing)").check()
    page.get_by_role("button", name="Check the gate").click()
    expect(page.locator("#gate-decision")).to_be_visible()
    page.get_by_label("Reason (recorded on the run)").fill("web e2e plan")
    screenshots(page, "launch")
    page.get_by_role("button", name="Start the plan").click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{8,}$"))
    log = page.locator("#run-log pre.log")
    expect(page.locator("#run-log")).to_have_attribute("data-ended", "true", timeout=45_000)
    expect(log).to_contain_text("TASK [")
    expect(log).to_contain_text("PLAY RECAP")
    expect(page.locator("[data-run-status]")).to_have_attribute("data-run-status", "successful")
    expect(page.locator("#run-summary tbody tr")).to_have_count(2)  # lab-1, lab-2
    text = log.inner_text()
    assert text.count("PLAY RECAP") == 1, "a line was streamed twice"
    screenshots(page, "run", docs="run")

    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.locator("tbody tr").first).to_contain_text("successful")

    # The calendar (helper F's page): the payment-run freeze on the month's last three
    # working days, and on no other day of the month.
    today = datetime.now(AMSTERDAM).date()
    month = f"{today:%Y-%m}"
    days = [date(today.year, today.month, d) for d in range(1, 32) if valid(today, d)]
    expected = [d.isoformat() for d in days if d.weekday() < 5][-3:]
    page.goto(f"{lab.url}/calendar?month={month}&tz=Europe/Amsterdam")
    frozen = page.locator(f'td.day[data-date^="{month}-"]').filter(
        has=page.locator("li.event.freeze", has_text=f"payment-run-{MEMBER}")
    )
    expect(frozen).to_have_count(3)
    assert [c.get_attribute("data-date") for c in frozen.all()] == expected
    screenshots(page, "calendar")

    # Signing out ends the session: the pages send you back to the sign-in form.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{lab.url}/login")
    page.goto(f"{lab.url}/runs")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fruns$"))
