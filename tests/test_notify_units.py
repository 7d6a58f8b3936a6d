"""Notifications, the pure parts: signing, the backoff schedule, notifications.yml
validation, which targets an event goes to, and reading secrets (environment and vault)."""

from __future__ import annotations

import base64
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from controlplane.audit.chain import AuditEntry
from controlplane.errors import FleetInvalid, InvalidInput
from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Fleet
from controlplane.notify import events
from controlplane.notify.backoff import Backoff
from controlplane.notify.config import EventType, Target, load_targets, parse_targets
from controlplane.notify.delivery import body_of
from controlplane.notify.secrets import Signer, check_secret, signers
from controlplane.windows.loader import load_gate
from tests.conftest import LAB

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet(LAB)


def target(**fields: Any) -> Target:
    base: dict[str, Any] = {
        "name": "ops",
        "url": "https://hooks.example.org/cp",
        "events": ("run.finished",),
        "secret_env": "CP_WEBHOOK_OPS_SECRET",
    }
    return Target(**{**base, **fields})


# -- signing ---------------------------------------------------------------------------------


def test_a_signed_body_verifies_with_the_standard_webhooks_library() -> None:
    body = body_of({"type": "run.finished", "timestamp": "2026-11-24T09:00:00Z", "data": {}})
    now = datetime.now(UTC)
    headers = Signer(SECRET).headers("msg_1", now, body)
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]+=*", headers["webhook-signature"])
    assert Webhook(SECRET).verify(body, headers)["type"] == "run.finished"
    # The HMAC is the spec's: base64 HMAC-SHA256 of "{id}.{timestamp}.{body}".
    import hashlib
    import hmac

    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"msg_1.{headers['webhook-timestamp']}.{body}".encode()
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    # Any change to the body, the id or the key fails verification.
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace("run.finished", "run.finishes"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, {**headers, "webhook-id": "msg_2"})
    other = "whsec_" + base64.b64encode(bytes(32)).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    assert SECRET not in repr(Signer(SECRET)) and SECRET not in str(headers)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "must start with whsec_"),
        ("whsec_not*base64!", "is not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "holds 5 bytes"),
    ],
)
def test_a_malformed_secret_is_one_line_that_never_quotes_it(value: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem) as caught:
        check_secret(value, "notification target ops")
    assert value not in str(caught.value) and "\n" not in str(caught.value)


# -- backoff ---------------------------------------------------------------------------------


def test_the_backoff_grows_to_its_cap_and_jitters_within_bounds() -> None:
    b = Backoff()
    middle = [b.delay(n, lambda: 0.5).total_seconds() for n in range(1, 8)]
    assert middle == [5, 30, 180, 1080, 3600, 3600, 3600]
    assert b.delay(1, lambda: 0.0).total_seconds() == pytest.approx(4.0)
    assert b.delay(1, lambda: 1.0).total_seconds() == pytest.approx(6.0)
    assert b.delay(10_000, lambda: 0.5) == timedelta(hours=1)  # no float overflow


def test_the_backoff_gives_up_after_its_attempts_or_its_age() -> None:
    b = Backoff(max_attempts=5, max_age=timedelta(hours=2))
    assert b.next_attempt(1, T0, T0, lambda: 0.5) == T0 + timedelta(seconds=5)
    assert b.next_attempt(5, T0, T0, lambda: 0.5) is None
    late = T0 + timedelta(hours=1, minutes=50)
    # 110 min + 18 min is past the two hours; 110 min + 3 min is not.
    assert b.next_attempt(4, T0, late, lambda: 0.5) is None
    assert b.next_attempt(3, T0, late, lambda: 0.5) == late + timedelta(minutes=3)
    with pytest.raises(InvalidInput):
        Backoff(first=timedelta(0))


# -- notifications.yml -----------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    fleet_dir = tmp_path / "fleet"
    shutil.copytree(LAB, fleet_dir)
    (fleet_dir / "notifications.yml").write_text(text)
    return fleet_dir


GOOD = """
targets:
  - name: ops
    url: https://hooks.example.org/cp?source=lab
    events: [run.finished, window.opened]
    members: [amsterdam]
    run_statuses: [failed, interrupted]
    secret_env: CP_WEBHOOK_OPS_SECRET
  - name: itsm
    url: http://127.0.0.1:8600/hook
    events: [emergency.override, maintenance.skipped, window.closed]
    secret_vault: {file: cooperative, key: cp_webhooks.ops_example}
"""


def test_a_good_file_loads_and_an_absent_one_means_no_targets(tmp_path: Path, fleet: Fleet) -> None:
    ops, itsm = load_targets(write(tmp_path, GOOD), fleet)
    assert ops.events == (EventType.RUN_FINISHED, EventType.WINDOW_OPENED)
    assert ops.members == ("amsterdam",) and ops.run_statuses == ("failed", "interrupted")
    assert itsm.secret_vault is not None and itsm.secret_vault.file == "cooperative"
    assert load_targets(tmp_path, fleet) == ()
    assert parse_targets({"targets": []}, fleet, LAB) == ()


BAD = [
    ("events: [run.finshed]", "targets[ops].events[0]: Input should be 'run.finished'"),
    ("members: [leiden]", "targets[ops].members: unknown member 'leiden'"),
    ("url: ftp://hooks.example.org/", "targets[ops].url: must be an http:// or https:// URL"),
    ("url: https://user:pw@hooks.example.org/", "credentials in the URL are refused"),
    ("url: not a url", "is not a URL"),
    ("url: https:///path", "the URL names no host"),
    ("url: https://hooks.example.org:99999/", "not a valid URL"),
    ("secret_vault: {file: cooperative, key: a}", "give exactly one of secret_env or secret_vault"),
    ("secret_env: lower-case", "secret_env: String should match pattern"),
    ("run_statuses: [skipped]", "targets[ops].run_statuses[0]: Input should be 'successful'"),
    ("colour: blue", "targets[ops].colour: unknown field"),
]


@pytest.mark.parametrize(("line", "problem"), BAD)
def test_a_bad_target_is_one_line_naming_file_and_field(
    tmp_path: Path, fleet: Fleet, line: str, problem: str
) -> None:
    key = line.split(":", 1)[0]
    fields = {
        "name": "ops",
        "url": "https://hooks.example.org/cp",
        "events": "[run.finished]",
        "secret_env": "CP_WEBHOOK_OPS_SECRET",
    }
    body = "".join(f"    {k}: {v}\n" for k, v in fields.items() if k != key)
    text = "targets:\n  - " + (body + f"    {line}\n").lstrip()
    with pytest.raises(FleetInvalid) as caught:
        load_targets(write(tmp_path, text), fleet)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "fleet" / "notifications.yml") + ": ")
    assert problem in message and "\n" not in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("targets: {}", "targets: must be a list"),
        ("hooks: []", "must be a mapping with one key, targets"),
        (GOOD + GOOD.split("targets:")[1], "targets[ops].name: duplicate name 'ops'"),
        (
            GOOD.replace("events: [run.finished, window.opened]", "events: [window.opened]"),
            "run_statuses only applies with the run.finished event",
        ),
        (GOOD.replace("file: cooperative", "file: nowhere"), "secret_vault.file: no such file"),
        (
            "targets: [{name: x, url: 'http://a', events: []}]",
            "events: Tuple should have at least 1 item",
        ),
        ("targets:\n  - name: ops\n    name: twice\n", "duplicate key 'name'"),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, fleet: Fleet, text: str, problem: str) -> None:
    with pytest.raises(FleetInvalid, match=re.escape(problem)):
        load_targets(write(tmp_path, text), fleet)


def test_validate_refuses_a_bad_notifications_file_with_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from controlplane.cli import run

    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    fleet_dir = write(tmp_path, GOOD.replace("[amsterdam]", "[amsterdam, leiden]"))
    assert run(["validate", "--fleet", str(fleet_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {fleet_dir / 'notifications.yml'}: targets[ops].members: unknown member 'leiden'"
    )


def test_the_lab_example_once_uncommented_is_valid_and_its_vault_secret_signs(
    tmp_path: Path, fleet: Fleet
) -> None:
    text = (LAB / "notifications.yml").read_text()
    assert yaml.safe_load(text) == {"targets": []}  # the lab sends nothing
    lines = [re.sub(r"^#(  - |    )(?!#)", r"\1", ln) for ln in text.splitlines()]
    enabled = "\n".join(lines).replace("targets: []", "targets:")
    [example] = load_targets(write(tmp_path, enabled), fleet)
    assert example.name == "ops-example" and set(example.events) == set(EventType)
    keys = signers((example,), LAB, LAB / "vault-password", environ={})
    body = body_of({"type": "run.finished"})
    headers = keys["ops-example"].headers("msg_1", datetime.now(UTC), body)
    assert headers["webhook-signature"].startswith("v1,")


# -- secrets ---------------------------------------------------------------------------------


def test_a_secret_comes_from_the_environment_and_a_missing_one_is_one_line() -> None:
    ops = target()
    got = signers((ops,), LAB, None, environ={"CP_WEBHOOK_OPS_SECRET": SECRET})
    body = body_of({"type": "x"})
    headers = got["ops"].headers("msg_1", datetime.now(UTC), body)
    assert Webhook(SECRET).verify(body, headers) == {"type": "x"}
    with pytest.raises(InvalidInput) as caught:
        signers((ops,), LAB, None, environ={})
    assert str(caught.value) == (
        "notification target ops (environment variable CP_WEBHOOK_OPS_SECRET): "
        "the environment variable is not set"
    )


@pytest.mark.parametrize(
    ("key", "password", "problem"),
    [
        ("cp_webhooks.nothing", "lab", "the vault file has no key cp_webhooks.nothing"),
        ("cp_webhooks", "lab", "the vault key cp_webhooks is not a text value"),
        ("cp_webhooks.ops_example", "wrong", "does not decrypt with the vault password"),
        ("cp_webhooks.ops_example", "none", "no vault password file"),
    ],
)
def test_vault_secret_problems_are_one_line_without_the_secret(
    tmp_path: Path, key: str, password: str, problem: str
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    chosen = {"lab": LAB / "vault-password", "wrong": wrong, "none": None}[password]
    ops = target(secret_env=None, secret_vault={"file": "cooperative", "key": key})
    with pytest.raises(InvalidInput, match=re.escape(problem)) as caught:
        signers((ops,), LAB, chosen, environ={})
    assert "whsec_" not in str(caught.value)


# -- which targets an event goes to ----------------------------------------------------------


def run_row(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "r" * 32,
        "kind": "deploy",
        "status": "failed",
        "options": {"check": False},
        "member": "amsterdam",
        "app": "uitkering",
        "version": "1.1.0",
        "hosts": ["lab-1"],
        "started_by": "alice@cp1",
        "reason": "release",
        "error": "x" * 2000,
        "created_at": T0,
        "started_at": T0,
        "finished_at": T0 + timedelta(minutes=2),
    }
    return {**base, **fields}


def test_a_run_event_carries_its_facts_and_goes_where_it_is_wanted(fleet: Fleet) -> None:
    event = events.run_finished(run_row(), fleet)
    payload = event.payload()
    assert payload["type"] == "run.finished"
    assert payload["timestamp"] == "2026-11-24T09:02:00Z"
    data = payload["data"]
    assert (
        data["run"] == "r" * 32 and data["status"] == "failed" and data["members"] == ["amsterdam"]
    )
    assert data["url"] == "/api/v1/runs/" + "r" * 32 and len(data["error"]) == 500
    assert events.matches(target(), event)
    assert events.matches(target(members=("amsterdam", "utrecht")), event)
    assert not events.matches(target(members=("rotterdam",)), event)
    assert events.matches(target(run_statuses=("failed",)), event)
    assert not events.matches(target(run_statuses=("successful", "interrupted")), event)
    assert not events.matches(target(events=("window.opened",)), event)


def test_a_host_run_concerns_the_members_placed_there_and_a_filter_narrows_the_payload(
    fleet: Fleet,
) -> None:
    on_lab1 = sorted({i.member for i in fleet.instances() if i.host == "lab-1"})
    assert len(on_lab1) > 1
    patch = events.run_finished(run_row(kind="patch", member=None, app=None), fleet)
    assert sorted(patch.members) == on_lab1
    assert events.matches(target(members=(on_lab1[0],)), patch)
    assert patch.payload((on_lab1[0],))["data"]["members"] == [on_lab1[0]]


def audit_entry(action: str, outcome: str = "ok", **fields: Any) -> AuditEntry:
    base: dict[str, Any] = {
        "at": T0,
        "actor": "alice@cp1",
        "role": "admin",
        "action": action,
        "outcome": outcome,
        "member": "utrecht",
        "target": "e" * 32,
        "reason": "outage of the payment run",
        "detail": {"action": "deploy", "gate": "freeze payment-run-utrecht", "kind": "deploy"},
        "hash": "h" * 64,
    }
    return AuditEntry(**{**base, **fields})


def test_audit_entries_become_override_and_skipped_events_and_nothing_else(
    fleet: Fleet,
) -> None:
    override = events.from_audit(audit_entry("emergency_override"), fleet)
    assert override is not None and override.type is EventType.EMERGENCY_OVERRIDE
    assert override.key == "audit:" + "h" * 64
    data = override.payload()["data"]
    assert data["reason"] == "outage of the payment run" and data["gate"].startswith("freeze")
    assert events.from_audit(audit_entry("emergency_override", "refused"), fleet) is None
    assert events.from_audit(audit_entry("deploy", "accepted"), fleet) is None
    skipped = events.from_audit(
        audit_entry(
            "maintenance_skipped",
            "failed",
            member=None,
            detail={"job": "patch-lab-2", "hosts": ["lab-2"], "why": "missed"},
        ),
        fleet,
    )
    assert skipped is not None and skipped.type is EventType.MAINTENANCE_SKIPPED
    assert skipped.payload()["data"]["why"] == "missed"
    assert skipped.members == {i.member for i in fleet.instances() if i.host == "lab-2"}
    missed = events.from_audit(
        audit_entry(
            "maintenance_skipped",
            "failed",
            member=None,
            target="deploy:" + "d" * 32,
            detail={"kind": "deploy", "why": "missed"},
        ),
        fleet,
    )
    assert missed is not None
    data = missed.payload()["data"]
    assert (data["run"], data["url"], data["job"]) == (None, None, "deploy:" + "d" * 32)


def test_window_edges_in_a_span_and_the_members_they_concern(fleet: Fleet) -> None:
    gate = load_gate(LAB, fleet, clock=None)
    # patch-lab-1 opens Mondays 05:00 Amsterdam (04:00Z in winter) for two hours.
    opens = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    found = events.window_edges(
        gate.occurrences_between(opens - timedelta(hours=1), opens + timedelta(hours=3)),
        opens - timedelta(seconds=1),
        opens + timedelta(hours=2),
        fleet,
    )
    assert [(e.type.value, e.data["window"], e.at) for e in found] == [
        ("window.opened", "patch-lab-1", opens),
        ("window.closed", "patch-lab-1", opens + timedelta(hours=2)),
    ]
    assert found[0].members == {i.member for i in fleet.instances() if i.host == "lab-1"}
    assert found[0].key == "window.opened:patch-lab-1:2026-11-23T04:00:00Z"
    # Half-open the other way: an edge at the start of a span was the previous span's.
    later = events.window_edges(
        gate.occurrences_between(opens, opens + timedelta(hours=3)),
        opens,
        opens + timedelta(hours=1),
        fleet,
    )
    assert later == []


def test_an_everything_window_concerns_every_member(fleet: Fleet) -> None:
    from controlplane.windows.rules import Occurrence, Window

    window = Window(
        name="dc-power",
        kind="maintenance",  # type: ignore[arg-type]
        scope="everything",  # type: ignore[arg-type]
        start=datetime(2026, 1, 1, 1, 0),
        duration="PT1H",  # type: ignore[arg-type]
        rrule="FREQ=YEARLY",
    )
    occ = Occurrence(window, datetime(2026, 1, 1, 0, 0, tzinfo=UTC))
    [opened] = events.window_edges([occ], occ.start - timedelta(seconds=1), occ.start, fleet)
    assert opened.members == {m.slug for m in fleet.members}
    assert opened.payload()["data"]["kind"] == "maintenance"
