"""Typed run options: validated on construction, one JSON document in the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from controlplane.deploy.options import GateRecord, PlaybookVars, RunOptions, ScheduleRef
from controlplane.errors import InvalidInput

FULL = RunOptions(
    check=True,
    serial="25%",
    max_fail_percentage=10,
    broken=True,
    first_install=True,
    gate=GateRecord("emergency", "freeze payment-run-amsterdam"),
    schedule=ScheduleRef(
        "drift-nightly",
        datetime(2026, 11, 24, 3, 0, tzinfo=timezone(timedelta(hours=1))),
        window="nightly",
        silence_id="s-1",
    ),
    vars=PlaybookVars(vault_dir="/fleet/vault", broken_versions={"uitkering": ("1.2.0",)}),
)


def test_options_round_trip_through_their_json_document() -> None:
    assert RunOptions.from_json(FULL.to_json()) == FULL
    assert RunOptions.from_json({}) == RunOptions()
    assert FULL.max_fail_percentage == 10.0
    assert FULL.schedule is not None and FULL.schedule.occurrence == datetime(
        2026, 11, 24, 2, 0, tzinfo=UTC
    )
    assert FULL.vars.broken_versions == {"uitkering": ("1.2.0",)}


def test_options_become_the_playbook_variables() -> None:
    assert RunOptions().extravars() == {}
    assert FULL.extravars() == {
        "cp_serial": "25%",
        "cp_max_fail_percentage": 10.0,
        "cp_vault_dir": "/fleet/vault",
        "cp_broken_versions": {"uitkering": ["1.2.0"]},
    }


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: RunOptions(serial="lots"), "serial"),
        (lambda: RunOptions(serial="0"), "serial"),
        (lambda: RunOptions(serial="150%"), "serial"),
        (lambda: RunOptions(max_fail_percentage=101), "max_fail_percentage"),
        (lambda: RunOptions(max_fail_percentage=True), "max_fail_percentage"),
        (lambda: ScheduleRef("job", datetime(2026, 11, 24, 3, 0)), "schedule.occurrence"),
        (lambda: ScheduleRef(""), "schedule.job"),
        (lambda: GateRecord("", "msg"), "gate.reason"),
    ],
)
def test_bad_options_are_refused_naming_the_field(make: Any, field: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{field}: "):
        make()


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"check": "yes"}, "options.check"),
        ({"serial": 2}, "options.serial"),
        ({"max_fail_percentage": "10%"}, "options.max_fail_percentage"),
        ({"gate": "open"}, "options.gate"),
        ({"schedule": {"job": "j", "occurrence": "tuesday"}}, "schedule.occurrence"),
        ({"vars": {"broken_versions": {"uitkering": "1.2.0"}}}, "vars.broken_versions"),
    ],
)
def test_bad_stored_documents_are_refused_naming_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{field}"):
        RunOptions.from_json(doc)


def test_keys_a_newer_release_added_are_ignored_when_reading() -> None:
    assert RunOptions.from_json({"check": True, "priority": "high"}) == RunOptions(check=True)
