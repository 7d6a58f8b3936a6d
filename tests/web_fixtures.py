"""Fixtures for the web pages: fast in-process sign-in over a TestClient, and the real thing
(a ``controlplane serve`` child process on a copy of the lab fleet, driven by headless
Debian Chromium through Playwright; browsers are never downloaded).

Browser tests start Ansible and serve: run them under ``flock /tmp/cp-e2e.lock``.

Screenshots go to the test's own ``tmp_path/screenshots``; with ``CP_UPDATE_SCREENSHOTS=1``
the ones a test names for the docs are also copied to ``docs/screenshots/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, sync_playwright

from controlplane.access.policy import Role
from controlplane.access.store import TokenStore
from controlplane.fleet.loader import load_fleet
from controlplane.store.db import make_engine, migrate
from tests.conftest import LAB, ROOT
from tests.refapp_fixtures import kill_refapps
from tests.test_serve_service import CLI, ServeProcess

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS_DOCS = ROOT / "docs" / "screenshots"
UPDATE_SCREENSHOTS = os.environ.get("CP_UPDATE_SCREENSHOTS", "") == "1"

# The lab fleet's 127.0.10.x hosts, moved to a range no other test uses. Helper pages'
# browser tests each take their own: web_engineer 127.0.81.x, the board's 127.0.82.x.
ENGINEER_LAB = "127.0.81."
BOARD_LAB = "127.0.82."

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}


# -- in process: a TestClient over the API app (which serves the pages too) ----------------


def csrf_of(html: str) -> str:
    """The CSRF token a rendered form carries."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no csrf_token in the page"
    return found.group(1)


def sign_in(client: TestClient, token: str, next_path: str = "/") -> Any:
    """Sign ``client`` in through the login form; returns the login POST's response."""
    form = client.get("/login")
    assert form.status_code == 200, form.text
    return client.post(
        "/login",
        data={"token": token, "csrf_token": csrf_of(form.text), "next": next_path},
        follow_redirects=False,
    )


# -- a real serve on a lab copy --------------------------------------------------------------


@dataclass
class WebLab:
    """A running ``serve`` on a lab fleet copy: its URL, environment and data dir."""

    url: str
    env: dict[str, str]
    fleet: Path
    data_dir: Path
    serve: ServeProcess
    tokens: dict[str, str] = field(default_factory=dict)
    provisioning: subprocess.Popen[str] | None = None
    provision_result: dict[str, Any] | None = None

    def provisioned(self) -> dict[str, Any] | None:
        """Wait for the provisioning started with the lab; its ``--json`` result."""
        if self.provisioning is None or self.provision_result is not None:
            return self.provision_result
        out, err = self.provisioning.communicate(timeout=300)
        assert self.provisioning.returncode == 0, err
        self.provision_result = json.loads(out)
        return self.provision_result

    def token(self, role: Role, members: tuple[str, ...] = (), name: str | None = None) -> str:
        """A real token in serve's database (what ``controlplane tokens create`` makes)."""
        engine = make_engine(f"sqlite:///{self.data_dir / 'controlplane.db'}")
        try:
            migrate(engine)
            known = [m.slug for m in load_fleet(self.fleet).members]
            _, secret = TokenStore(engine).create(
                role=role,
                members=members,
                lifetime=timedelta(hours=2),
                created_by="test",
                known_members=known,
                name=name,
            )
        finally:
            engine.dispose()
        return secret


def lab_env(
    tmp_path: Path, loopback: str, probe_interval: float = 5
) -> tuple[Path, dict[str, str]]:
    """A copy of the lab fleet on ``loopback`` (e.g. ``127.0.81.``) with its own data dir."""
    fleet = tmp_path / "fleet"
    shutil.copytree(LAB, fleet)
    hosts = fleet / "hosts.yml"
    hosts.write_text(hosts.read_text().replace("127.0.10.", loopback))
    env = {
        **os.environ,
        "CONTROLPLANE_DATA_DIR": str(tmp_path / "var"),
        "CONTROLPLANE_FLEET": str(fleet),
        "CONTROLPLANE_PROBE_INTERVAL_SECONDS": str(probe_interval),
        "CONTROLPLANE_PROBE_TIMEOUT_SECONDS": "1",
    }
    for name in ("CONTROLPLANE_DATABASE_URL", "CONTROLPLANE_SERVER", "CONTROLPLANE_TOKEN"):
        env.pop(name, None)
    return fleet, env


def provision(env: dict[str, str], *members: str) -> subprocess.Popen[str]:
    """``controlplane provision MEMBER…`` through the real CLI, started (see ``WebLab``)."""
    return subprocess.Popen(
        [CLI, "provision", *members, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_web_lab(
    tmp_path: Path,
    loopback: str,
    provision_members: tuple[str, ...] = (),
    *,
    wait: bool = True,
    probe_interval: float = 5,
) -> WebLab:
    """serve on a lab copy, with ``provision_members`` provisioned (only those: it is the
    slow part). With ``wait=False`` serve starts while provisioning goes on (the test calls
    ``lab.provisioned()`` to wait for it); serve's first probe round, at its start, then
    finds those instances down."""
    fleet, env = lab_env(tmp_path, loopback, probe_interval)
    data_dir = tmp_path / "var"
    data_dir.mkdir(parents=True)
    # Migrated once here, so serve and the CLI do not both migrate a new database at once.
    engine = make_engine(f"sqlite:///{data_dir / 'controlplane.db'}")
    migrate(engine)
    engine.dispose()
    running = provision(env, *provision_members) if provision_members else None
    try:
        if wait and running is not None:
            out, err = running.communicate(timeout=300)
            assert running.returncode == 0, err
        serve = ServeProcess(env)
    except BaseException:
        if running is not None and running.poll() is None:
            running.kill()
            running.wait()
        raise
    lab = WebLab(serve.url, env, fleet, data_dir, serve, provisioning=running)
    if wait and running is not None:
        lab.provision_result = json.loads(out)
    return lab


def stop_web_lab(lab: WebLab) -> None:
    try:
        if lab.provisioning is not None and lab.provisioning.poll() is None:
            lab.provisioning.kill()
            lab.provisioning.wait()
        code = lab.serve.stop()
        assert code == 0, "".join(lab.serve.lines)
        assert "Traceback" not in "".join(lab.serve.lines), "".join(lab.serve.lines)
    finally:
        kill_refapps(lab.data_dir / "hosts")


@pytest.fixture
def engineer_lab(tmp_path: Path) -> Iterator[WebLab]:
    """serve on the lab (127.0.81.x) with amsterdam provisioned, and an engineer token for
    amsterdam (``lab.tokens["engineer"]``)."""
    # serve starts once amsterdam is up: its first probe round (at start) finds it healthy,
    # where one taken while provisioning would count against the 30-day SLA for good.
    lab = start_web_lab(tmp_path, ENGINEER_LAB, provision_members=("amsterdam",))
    try:
        lab.tokens["engineer"] = lab.token(Role.ENGINEER, ("amsterdam",), name="Eva (amsterdam)")
        yield lab
    finally:
        stop_web_lab(lab)


# -- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium (never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) at desktop size."""
    # The users are Dutch: the browser's own zone is the datacenter's.
    context = browser.new_context(viewport=DESKTOP, timezone_id="Europe/Amsterdam")  # type: ignore[arg-type]
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    try:
        yield opened
    finally:
        context.close()


class Screenshots:
    """Saves full-page screenshots under the test's tmp dir; ``docs=NAME`` also copies one
    to ``docs/screenshots/NAME.png`` when ``CP_UPDATE_SCREENSHOTS=1``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def __call__(self, page: Page, name: str, *, docs: str | None = None) -> Path:
        path = self.root / f"{len(self.taken):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        if docs is not None and UPDATE_SCREENSHOTS:
            SCREENSHOTS_DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS_DOCS / f"{docs}.png")
        return path


@pytest.fixture
def screenshots(tmp_path: Path) -> Screenshots:
    return Screenshots(tmp_path / "screenshots")


def browser_sign_in(page: Page, url: str, token: str) -> None:
    """Sign in through the login form as a person would."""
    page.goto(f"{url}/login")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))
