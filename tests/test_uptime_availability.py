"""The pure availability core: counts, raw and SLA availability, error budget, burn rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.errors import InvalidInput
from controlplane.uptime.availability import (
    Availability,
    Counts,
    Period,
    burn_rate,
    error_budget_remaining,
    first_hour,
    floor_hour,
)


def test_raw_and_sla_availability() -> None:
    # 100 probes: 90 good; 10 in a window, of which 2 good.
    c = Counts(total=100, good=90, in_window=10, good_in_window=2)
    assert c.availability == pytest.approx(0.9)
    # The SLA leaves the window out entirely: 88 good of 90.
    assert c.sla_total == 90 and c.sla_good == 88
    assert c.sla_availability == pytest.approx(88 / 90)


def test_no_probes_means_unknown_not_zero() -> None:
    assert Counts().availability is None
    assert Counts().sla_availability is None
    only_window = Counts(total=5, good=0, in_window=5, good_in_window=0)
    assert only_window.availability == 0
    assert only_window.sla_availability is None
    a = Availability("amsterdam", "uitkering", Period.DAY, 0.995, Counts())
    assert a.raw is None and a.budget_remaining is None and a.burn_rate is None


def test_budget_and_burn_follow_the_reference_formulas() -> None:
    # SLO 99.5 %: budget 0.5 %.
    assert error_budget_remaining(1.0, 0.995) == pytest.approx(1.0)
    assert error_budget_remaining(0.995, 0.995) == pytest.approx(0.0)
    assert error_budget_remaining(0.9975, 0.995) == pytest.approx(0.5)
    assert error_budget_remaining(0.99, 0.995) == pytest.approx(-1.0)  # overspent twice over
    assert burn_rate(0.995, 0.995) == pytest.approx(1.0)
    assert burn_rate(1 - 0.005 * 14.4, 0.995) == pytest.approx(14.4)
    with pytest.raises(ValueError):
        burn_rate(0.9, 1.0)


def test_availability_record_uses_raw_for_the_slo_and_serialises() -> None:
    c = Counts(total=200, good=196, in_window=4, good_in_window=0)
    a = Availability("den-haag", "uitkering", Period.WEEK, 0.99, c)
    assert a.raw == pytest.approx(0.98)
    assert a.sla == pytest.approx(1.0)
    assert a.budget_remaining == pytest.approx((0.98 - 0.99) / 0.01)
    assert a.burn_rate == pytest.approx(2.0)
    data = a.to_json()
    assert data["member"] == "den-haag" and data["window"] == "7d"
    assert data["availability"] == pytest.approx(0.98)
    assert data["sla_availability"] == 1.0
    assert data["probes"] == 200 and data["in_window"] == 4


@pytest.mark.parametrize(
    "bad",
    [
        dict(total=1, good=2),
        dict(total=1, in_window=2),
        dict(total=5, good=1, in_window=3, good_in_window=2),
        dict(total=-1),
    ],
)
def test_impossible_counts_are_rejected(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Counts(**bad)


def test_period_parsing() -> None:
    assert Period.parse("30d") is Period.MONTH
    assert Period.parse("1d") is Period.DAY
    assert Period.parse(" 7D ") is Period.WEEK
    assert Period.MONTH.hours == 720
    with pytest.raises(InvalidInput, match="window: '2w' is not one of"):
        Period.parse("2w")


def test_long_periods_count_whole_clock_hours() -> None:
    now = datetime(2026, 3, 29, 14, 37, 12, tzinfo=UTC)
    assert floor_hour(now) == datetime(2026, 3, 29, 14, tzinfo=UTC)
    assert first_hour(Period.DAY, now) == datetime(2026, 3, 28, 15, tzinfo=UTC)
    assert first_hour(Period.MONTH, now) == floor_hour(now) - timedelta(hours=719)


counts = st.builds(
    lambda a, b, c, d: Counts(a + b + c + d, a + c, c + d, c),
    *(st.integers(0, 10_000) for _ in range(4)),
)


@given(counts, counts)
def test_probes_inside_windows_never_move_the_sla(base: Counts, extra: Counts) -> None:
    # Add only in-window probes (good or bad): the SLA figure cannot change.
    in_window_only = Counts(
        extra.in_window, extra.good_in_window, extra.in_window, extra.good_in_window
    )
    assert (base + in_window_only).sla_availability == base.sla_availability
    assert (base + in_window_only).sla_total == base.sla_total


@given(counts, st.floats(0.5, 0.9999))
def test_budget_and_burn_are_two_views_of_one_number(c: Counts, slo: float) -> None:
    a = Availability("utrecht", "reintegratie", Period.MONTH, slo, c)
    if a.raw is None:
        return
    assert a.budget_remaining is not None and a.burn_rate is not None
    assert a.budget_remaining == pytest.approx(1 - a.burn_rate, abs=1e-6)
    assert 0 <= a.raw <= 1
    assert a.sla is None or 0 <= a.sla <= 1
