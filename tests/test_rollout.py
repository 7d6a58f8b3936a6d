"""Pure rollout logic: batch sizes, thresholds, verdicts and rollback plans."""

from __future__ import annotations

import pytest

from controlplane.deploy.rollout import (
    HostState,
    ReleaseReport,
    Serial,
    batches,
    judge,
    parse_max_fail,
)
from controlplane.errors import InvalidInput

HOSTS = ["h1", "h2", "h3", "h4", "h5"]


def report(host: str, before: str | None, after: str | None, healthy: bool = True) -> ReleaseReport:
    return ReleaseReport(host, "amsterdam", "uitkering", 8101, before, after, healthy)


@pytest.mark.parametrize(
    ("text", "sizes"),
    [
        ("1", [1, 1, 1, 1, 1]),
        ("2", [2, 2, 1]),
        ("50%", [2, 2, 1]),
        ("10%", [1] * 5),
        ("100%", [5]),
        ("9", [5]),
    ],
)
def test_batches_follow_ansible_serial(text: str, sizes: list[int]) -> None:
    assert [len(b) for b in batches(HOSTS, Serial.parse(text))] == sizes


@pytest.mark.parametrize("bad", ["0", "-1", "0%", "150%", "two", "2 hosts", "5%%", ""])
def test_bad_serial_is_input_error(bad: str) -> None:
    with pytest.raises(InvalidInput, match=r"^serial: "):
        Serial.parse(bad)


@pytest.mark.parametrize(("text", "value"), [("0%", 0.0), ("25%", 25.0), ("25", 25.0)])
def test_max_fail(text: str, value: float) -> None:
    assert parse_max_fail(text) == value


@pytest.mark.parametrize("bad", ["101%", "-5%", "half", "25 %"])
def test_bad_max_fail(bad: str) -> None:
    with pytest.raises(InvalidInput, match=r"^max_fail: "):
        parse_max_fail(bad)


def test_all_switched_is_success_and_needs_no_rollback() -> None:
    verdict = judge(
        ["h1", "h2"],
        "1.1.0",
        [report("h1", "1.0.0", "1.1.0"), report("h2", "1.1.0", "1.1.0")],
        set(),
        set(),
    )
    assert verdict.succeeded
    assert [h.state for h in verdict.hosts] == [HostState.SWITCHED, HostState.UNCHANGED]
    assert verdict.rollback_plan() == {}


def test_broken_release_rolls_back_switched_and_failed_hosts() -> None:
    verdict = judge(
        ["h1", "h2", "h3"],
        "1.2.0",
        [report("h1", "1.1.0", "1.2.0"), report("h2", "1.1.0", "1.2.0", healthy=False)],
        failed={"h2"},
        unreachable=set(),
    )
    assert not verdict.succeeded
    states = {h.host: h.state for h in verdict.hosts}
    assert states == {"h1": HostState.SWITCHED, "h2": HostState.FAILED, "h3": HostState.NOT_RUN}
    assert verdict.rollback_plan() == {"1.1.0": ["h1", "h2"]}


def test_unreachable_host_is_not_rolled_back_and_fresh_failures_are_named() -> None:
    verdict = judge(
        ["h1", "h2", "h3"],
        "1.1.0",
        [report("h1", "1.0.0", "1.1.0"), report("h3", None, "1.1.0", healthy=False)],
        failed={"h3"},
        unreachable={"h2"},
    )
    assert {h.host: h.state for h in verdict.hosts}["h2"] is HostState.UNREACHABLE
    assert verdict.rollback_plan() == {"1.0.0": ["h1"]}
    assert verdict.without_previous_release() == ["h3"]
