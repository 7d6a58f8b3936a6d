"""The web pages' sign-in, session, CSRF and access rules, in process (no browser).

The pages run on the API's app over a real SQLite store with real tokens, so a session is
checked against the same token store and the pages call the same operations as the API.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from controlplane.access.policy import Role
from controlplane.deploy.model import RunEvent, RunKind, RunSpec, RunStatus
from controlplane.schemas.windows import OccurrenceOut
from controlplane.web.overview import health_of, next_of_kind
from controlplane.web.runs import log_line
from controlplane.web.session import SESSION_COOKIE, SessionCodec, load_secret, safe_next
from tests.api_fixtures import OTHER, OWN, Api, build_api
from tests.web_fixtures import csrf_of, sign_in


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    built = build_api(tmp_path_factory.mktemp("web"), probe_timeout_seconds=0.3)
    yield built
    built.client.close()
    built.ctx.close()


def client(api: Api, base_url: str = "http://testserver") -> TestClient:
    """A fresh browser: its own cookie jar."""
    return TestClient(api.app, base_url=base_url)


def run_of(api: Api, member: str, status: RunStatus | None = RunStatus.FAILED) -> str:
    store = api.ctx.runs
    host = api.ctx.fleet.instances(member=member)[0].host
    run = store.create(
        RunSpec(
            kind=RunKind.DEPLOY,
            playbook="deploy.yml",
            started_by="test",
            member=member,
            app="uitkering",
            version="1.0.0",
            hosts=(host,),
        )
    )
    if status is not None:
        store.transition(run.id, status, error="a sample run")
    return run.id


def set_cookies(response: Any) -> dict[str, str]:
    """Each Set-Cookie header of ``response`` by cookie name."""
    found: dict[str, str] = {}
    for header in response.headers.get_list("set-cookie"):
        found[header.split("=", 1)[0]] = header
    return found


# -- sign-in and the session cookie ----------------------------------------------------------


def test_a_page_without_a_session_sends_you_to_sign_in_and_back(api: Api) -> None:
    browser = client(api)
    answer = browser.get("/runs?member=amsterdam", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fruns%3Fmember%3Damsterdam"
    signed = sign_in(browser, api.tokens["engineer"], "/runs?member=amsterdam")
    assert signed.status_code == 303
    assert signed.headers["location"] == "/runs?member=amsterdam"
    assert browser.get("/runs?member=amsterdam").status_code == 200


def test_the_session_cookie_is_httponly_strict_signed_and_holds_no_token(api: Api) -> None:
    token = api.tokens["engineer"]
    answer = sign_in(client(api), token)
    cookie = set_cookies(answer)[SESSION_COOKIE]
    flags = [f.strip().lower() for f in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain http: a Secure cookie would never come back
    value = cookie.split(";")[0].split("=", 1)[1]
    secret_part = token.split("_", 2)[2]  # the secret itself may hold underscores
    assert token not in value and secret_part not in value
    # Over HTTPS the cookie is Secure.
    https = sign_in(client(api, "https://testserver"), token)
    assert "secure" in [f.strip().lower() for f in set_cookies(https)[SESSION_COOKIE].split(";")]


def test_the_board_lands_on_the_costs_unless_headed_elsewhere(api: Api) -> None:
    assert sign_in(client(api), api.tokens["board"]).headers["location"] == "/costs"
    headed = sign_in(client(api), api.tokens["board"], "/uptime")
    assert headed.headers["location"] == "/uptime"
    assert sign_in(client(api), api.tokens["admin"]).headers["location"] == "/"


def test_a_bad_token_is_refused_with_one_message_and_no_session(api: Api) -> None:
    for bad in ("nonsense", "cpt_000000000000_" + "A" * 43, ""):
        browser = client(api)
        answer = sign_in(browser, bad)
        assert answer.status_code == 401, bad
        assert "Sign-in failed: unknown, expired or revoked token." in answer.text
        assert SESSION_COOKIE not in set_cookies(answer)
        assert browser.get("/", follow_redirects=False).status_code == 303


def test_sign_in_without_the_forms_csrf_token_is_refused(api: Api) -> None:
    browser = client(api)
    browser.get("/login")
    answer = browser.post(
        "/login", data={"token": api.tokens["engineer"], "csrf_token": "0" * 64, "next": "/"}
    )
    assert answer.status_code == 403
    assert SESSION_COOKIE not in set_cookies(answer)


def test_a_forged_or_tampered_cookie_is_no_session(api: Api) -> None:
    browser = client(api)
    sign_in(browser, api.tokens["engineer"])
    value = browser.cookies[SESSION_COOKIE]
    browser.cookies.set(SESSION_COOKIE, value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert browser.get("/", follow_redirects=False).status_code == 303
    # Signed with another server's secret: just as unknown.
    other = SessionCodec(b"x" * 32).issue(value.split(".")[0][:12], 0)[0]
    browser.cookies.set(SESSION_COOKIE, other)
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_revoking_the_token_ends_its_web_sessions(api: Api) -> None:
    token = api.token(Role.ENGINEER, (OWN,))
    browser = client(api)
    sign_in(browser, token)
    assert browser.get(f"/members/{OWN}").status_code == 200
    api.ctx.tokens.revoke(token)
    answer = browser.get(f"/members/{OWN}", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_sign_in_and_out_are_audited_and_sign_out_needs_the_csrf_token(api: Api) -> None:
    browser = client(api)
    sign_in(browser, api.tokens["board"])
    page = browser.get("/uptime", follow_redirects=False)  # any page: the form is in the header
    del page
    refused = browser.post("/logout", data={})
    assert refused.status_code == 403
    assert browser.get("/members/utrecht").status_code == 200  # still signed in
    form = browser.get("/members/utrecht")
    out = browser.post("/logout", data={"csrf_token": csrf_of(form.text)}, follow_redirects=False)
    assert out.status_code == 303
    assert SESSION_COOKIE in set_cookies(out)  # cleared
    assert browser.get("/members/utrecht", follow_redirects=False).status_code == 303
    board_entries = [e for e in api.ctx.audit.entries() if e.role == "board"]
    actions = [(e.action, e.outcome) for e in board_entries]
    assert ("login", "ok") in actions and ("logout", "ok") in actions
    assert all("cpt_" not in str(e.content()) for e in api.ctx.audit.entries())


def test_an_old_session_is_no_session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    codec = SessionCodec(load_secret(tmp_path))
    value, session = codec.issue("0123456789ab", 0)
    assert codec.read(value) == session
    later = datetime.now(UTC) + timedelta(hours=12, minutes=1)
    monkeypatch.setattr("itsdangerous.timed.time.time", later.timestamp)
    assert codec.read(value) is None


def test_the_session_secret_is_made_once_and_private(tmp_path: Path) -> None:
    first = load_secret(tmp_path)
    assert load_secret(tmp_path) == first and len(first) == 32
    assert (tmp_path / "web-session.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/runs?member=x", "/runs?member=x"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/runs\r\nSet-Cookie: x", "/"),
        (None, "/"),
    ],
)
def test_next_goes_only_to_a_path_on_this_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


# -- access: the API's rules -----------------------------------------------------------------


def test_an_engineer_cannot_open_another_members_run_or_overview(api: Api) -> None:
    own, other = run_of(api, OWN), run_of(api, OTHER)
    browser = client(api)
    sign_in(browser, api.tokens["engineer"])
    assert browser.get(f"/runs/{own}").status_code == 200
    for path in (
        f"/runs/{other}",
        f"/runs/{other}/summary",
        f"/runs/{other}/events",
        f"/members/{OTHER}",
        f"/members/{OTHER}/live",
    ):
        answer = browser.get(path)
        assert answer.status_code == 404, path
        assert OTHER not in answer.text.split("<main", 1)[1].split("Not found", 1)[0], path
    listed = browser.get("/runs").text
    assert own[:8] in listed and other[:8] not in listed
    # Cancelling another member's run: refused like the API, and nothing changes.
    form = browser.get(f"/runs/{own}")
    answer = browser.post(f"/runs/{other}/cancel", data={"csrf_token": csrf_of(form.text)})
    assert answer.status_code == 404
    assert api.ctx.runs.get(other).cancel_requested is False


def test_a_form_post_without_the_csrf_token_changes_nothing(api: Api) -> None:
    queued = run_of(api, OWN, status=None)
    browser = client(api)
    sign_in(browser, api.tokens["engineer"])
    for data in ({}, {"csrf_token": "f" * 64}):
        answer = browser.post(f"/runs/{queued}/cancel", data=data)
        assert answer.status_code == 403
        assert "Nothing was changed" in answer.text
        assert api.ctx.runs.get(queued).status is RunStatus.QUEUED
    launched = browser.post("/runs/new", data={"member": OWN, "check": "true"})
    assert launched.status_code == 403
    # Another signed-in session's token is no good either: it is bound to its session.
    elsewhere = client(api)
    sign_in(elsewhere, api.tokens["engineer"])
    foreign = csrf_of(elsewhere.get(f"/runs/{queued}").text)
    assert browser.post(f"/runs/{queued}/cancel", data={"csrf_token": foreign}).status_code == 403
    # With the right one, it works.
    mine = csrf_of(browser.get(f"/runs/{queued}").text)
    done = browser.post(f"/runs/{queued}/cancel", data={"csrf_token": mine}, follow_redirects=False)
    assert done.status_code == 303
    assert api.ctx.runs.get(queued).status is RunStatus.CANCELED


def test_the_board_gets_nothing_from_runs_urls(api: Api) -> None:
    run_id = run_of(api, OWN)
    browser = client(api)
    sign_in(browser, api.tokens["board"])
    csrf = csrf_of(browser.get("/members/utrecht").text)
    for path in (
        "/runs",
        f"/runs/{run_id}",
        f"/runs/{run_id}/summary",
        f"/runs/{run_id}/events",
        "/runs/new",
    ):
        answer = browser.get(path)
        assert answer.status_code == 403, path
        assert run_id not in answer.text
    for path in (f"/runs/{run_id}/cancel", "/runs/new"):
        answer = browser.post(path, data={"csrf_token": csrf, "member": OWN})
        assert answer.status_code == 403, path
    nav = browser.get("/members/utrecht").text
    assert 'href="/runs"' not in nav and 'href="/costs"' in nav


def test_the_overview_shows_the_engineers_member_only(api: Api) -> None:
    browser = client(api)
    sign_in(browser, api.tokens["engineer"])
    home = browser.get("/", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == f"/members/{OWN}"
    page = browser.get(f"/members/{OWN}")
    assert page.status_code == 200
    apps = {sa.app for sa in api.ctx.fleet.stack(OWN).apps}
    for app in apps:
        assert f">{app}<" in page.text.replace("<br>", "<")
    # Not provisioned here: every instance is reported down, in words.
    assert "✗ </span>down" in page.text
    assert "Next freeze" in page.text and "payment-run-amsterdam" in page.text
    assert "Cost share" not in page.text  # an engineer has no costs.read
    fragment = browser.get(f"/members/{OWN}/live")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["cache-control"] == "no-store"


# -- pure parts ------------------------------------------------------------------------------


def _occ(window: str, kind: str, start: str, end: str) -> OccurrenceOut:
    return OccurrenceOut(
        window=window,
        kind=kind,
        scope="all",
        timezone="UTC",
        start_local=start,
        end_local=end,
        start_utc=start,
        end_utc=end,
        cutoff_utc=None,
    )


def test_next_of_kind_prefers_what_is_on_now_then_the_soonest() -> None:
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    occ = [
        _occ("later", "freeze", "2026-03-20T00:00:00Z", "2026-03-21T00:00:00Z"),
        _occ("soon", "freeze", "2026-03-11T00:00:00Z", "2026-03-12T00:00:00Z"),
        _occ("past", "freeze", "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"),
        _occ("patch", "maintenance", "2026-03-10T11:00:00Z", "2026-03-10T13:00:00Z"),
    ]
    soon = next_of_kind(occ, "freeze", now)
    assert soon is not None and soon.window == "soon"
    assert soon.countdown and not soon.active  # 12 h away: within a day
    on = next_of_kind(occ, "maintenance", now)
    assert on is not None and on.active and not on.countdown
    far = next_of_kind(occ[:1], "freeze", now)
    assert far is not None and not far.countdown
    assert next_of_kind(occ[2:3], "freeze", now) is None


def test_health_in_words() -> None:
    def inst(status: str) -> Any:
        from controlplane.schemas.runs import InstanceHealthOut

        return InstanceHealthOut(
            member="m",
            app="a",
            version="1",
            host="h",
            address="127.0.0.1",
            port=1,
            status=status,
            latency_seconds=0.0,
            error=None,
        )

    assert health_of([inst("healthy"), inst("healthy")]).label == "healthy"
    assert health_of([inst("healthy"), inst("down")]).label == "degraded"
    assert health_of([inst("down")]).label == "down"
    assert health_of([]).label == "no instances"


@pytest.mark.parametrize(
    ("event", "host", "task", "data", "line"),
    [
        ("playbook_on_task_start", None, "Switch release", {}, "TASK [Switch release]"),
        ("runner_on_ok", "lab-1", "x", {"changed": True}, "changed: [lab-1]"),
        ("runner_on_ok", "lab-1", "x", {"changed": False}, "ok: [lab-1]"),
        ("runner_on_failed", "lab-2", "x", {"msg": "health 503"}, "failed: [lab-2] health 503"),
        (
            "runner_on_unreachable",
            "lab-3",
            "x",
            {"reason": "unreachable"},
            "unreachable: [lab-3] unreachable",
        ),
        ("runner_on_start", "lab-1", "x", {}, ""),
        ("playbook_on_play_start", None, None, {"play": "deploy"}, "PLAY [deploy]"),
    ],
)
def test_log_lines_read_like_ansible(
    event: str, host: str | None, task: str | None, data: dict[str, Any], line: str
) -> None:
    assert log_line(event, host, task, data) == line


def test_the_recap_lists_every_host() -> None:
    text = log_line(
        "playbook_on_stats",
        None,
        None,
        {"ok": {"lab-1": 5, "lab-2": 4}, "changed": {"lab-1": 1}, "dark": {"lab-2": 1}},
    )
    assert text.splitlines()[0] == "PLAY RECAP"
    assert re.search(r"lab-1\s+: ok=5  changed=1  failures=0  unreachable=0", text)
    assert re.search(r"lab-2\s+: ok=4  changed=0  failures=0  unreachable=1", text)


def test_back_to_back_occurrences_of_one_window_read_as_one_span() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    days = [
        _occ("payment-run", "freeze", f"2026-12-{d}T23:00:00Z", f"2026-12-{d + 1}T23:00:00Z")
        for d in (28, 29, 30)
    ]
    other = _occ("other", "freeze", "2026-12-29T23:00:00Z", "2026-12-31T00:00:00Z")
    span = next_of_kind([*days, other], "freeze", now)
    assert span is not None and span.window == "payment-run"
    assert (span.start, span.end) == (
        datetime(2026, 12, 28, 23, tzinfo=UTC),
        datetime(2026, 12, 31, 23, tzinfo=UTC),
    )


def test_the_launch_form_shows_the_gates_decision_and_refuses_other_members(api: Api) -> None:
    browser = client(api)
    sign_in(browser, api.tokens["engineer"])
    review = browser.get(f"/runs/new?member={OWN}&app=uitkering&check=false&review=true")
    assert review.status_code == 200
    assert 'id="gate-decision"' in review.text
    decision = api.ctx.gate.check_member(OWN, "uitkering", datetime.now(UTC))
    # Refused now: the only way on is an emergency override with a reason.
    assert ('name="emergency_reason"' in review.text) is (not decision.allowed)
    assert browser.get(f"/runs/new?member={OTHER}&review=true").status_code == 404
    before = len(api.ctx.runs.find(member=OTHER, limit=500))
    answer = browser.post(
        "/runs/new", data={"csrf_token": csrf_of(review.text), "member": OTHER, "check": "true"}
    )
    # As the API answers a body naming another member: as if it did not exist.
    assert answer.status_code == 422
    assert f"member: unknown member {OTHER!r}" in html.unescape(answer.text)
    refused = [e for e in api.ctx.audit.entries() if e.member == OTHER and e.outcome == "refused"]
    assert refused and refused[-1].action == "plan"
    assert len(api.ctx.runs.find(member=OTHER, limit=500)) == before


def test_the_log_stream_sends_each_event_as_a_line_and_ends(api: Api) -> None:
    run_id = run_of(api, OWN)
    at = datetime.now(UTC)
    api.ctx.runs.append_events(
        run_id,
        [
            RunEvent(run_id, 0, "playbook_on_task_start", at, task="Switch release"),
            RunEvent(run_id, 1, "runner_on_ok", at, host="lab-1", data={"changed": True}),
        ],
    )
    browser = client(api)
    sign_in(browser, api.tokens["engineer"])
    answer = browser.get(f"/runs/{run_id}/events")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    blocks = [
        dict(line.split(": ", 1) for line in b.splitlines() if not line.startswith(":"))
        for b in answer.text.split("\n\n")
        if b.strip()
    ]
    assert [json.loads(b["data"])["line"] for b in blocks[:2]] == [
        "TASK [Switch release]",
        "changed: [lab-1]",
    ]
    assert [b.get("id") for b in blocks[:2]] == ["0", "1"]
    assert "event" not in blocks[0]  # unnamed: EventSource's onmessage gets every one
    assert blocks[-1]["event"] == "end" and len(blocks) == 3
    resumed = browser.get(f"/runs/{run_id}/events", headers={"Last-Event-ID": "0"})
    assert "Switch release" not in resumed.text and "changed: [lab-1]" in resumed.text
    page = browser.get(f"/runs/{run_id}")
    assert "TASK [Switch release]\nchanged: [lab-1]" in page.text


def test_the_all_members_overview_shows_every_member_with_costs_for_the_board(api: Api) -> None:
    browser = client(api)
    sign_in(browser, api.tokens["board"])
    for path in ("/", "/live"):
        answer = browser.get(path)
        assert answer.status_code == 200, path
        for member in api.ctx.fleet.members:
            assert f'href="/members/{member.slug}"' in answer.text, (path, member.slug)
        assert "Cost this month so far" in answer.text
        assert "Next freeze" not in answer.text  # the board has no windows.read
