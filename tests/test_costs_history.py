"""The reservation history store, run unchanged over SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from controlplane.costs.history import ReservationHistory
from controlplane.costs.ledger import open_ledger
from controlplane.costs.loader import load_costs
from controlplane.costs.metering import current_reservations
from controlplane.costs.model import Interval, Milli
from controlplane.costs.periods import Period
from controlplane.errors import InvalidInput
from controlplane.fleet.loader import load_fleet
from tests.conftest import LAB

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def history(engine: Engine) -> ReservationHistory:
    return ReservationHistory(engine)


def test_record_round_trips_and_is_idempotent(history: ReservationHistory) -> None:
    fleet = load_fleet(LAB)
    assert history.is_empty() and history.first_recorded() is None
    first = history.record(fleet, T0)
    # lab: 15 instances, and no member runs two replicas of one app on one host.
    assert (first.opened, first.closed) == (15, 0)
    assert not history.record(fleet, T0 + timedelta(hours=1)).changed
    stored = history.intervals()
    assert len(stored) == 15
    assert history.first_recorded() == T0
    want = current_reservations(fleet)
    assert {(iv.member, iv.app, iv.host): iv.amount for iv in stored} == want
    assert all(iv.start == T0 and iv.end is None for iv in stored)
    rotterdam = next(iv for iv in stored if iv.member == "rotterdam" and iv.app == "uitkering")
    assert rotterdam.amount == Milli(2000, 4000, 20000)  # decimals survive the round trip


def test_a_change_closes_the_old_interval_and_opens_a_new_one(
    history: ReservationHistory,
) -> None:
    key = ("den-haag", "reintegratie", "lab-2")
    other = ("utrecht", "uitkering", "lab-1")
    history.record_reservations({key: Milli(500, 1000, 5000), other: Milli(1000, 0, 0)}, T0)
    t1 = T0 + timedelta(days=3)
    done = history.record_reservations({key: Milli(1500, 3000, 5000)}, t1)  # grew; other gone
    assert (done.opened, done.closed) == (1, 2)
    got = sorted(history.intervals(), key=lambda iv: (iv.host, iv.start))
    assert got == [
        Interval("utrecht", "uitkering", "lab-1", Milli(1000, 0, 0), T0, t1),
        Interval(*key, Milli(500, 1000, 5000), T0, t1),
        Interval(*key, Milli(1500, 3000, 5000), t1, None),
    ]
    # Range queries return what overlaps [start, end).
    assert len(history.intervals(start=t1, end=t1 + timedelta(days=1))) == 1
    assert len(history.intervals(start=T0, end=T0 + timedelta(hours=1))) == 2
    # Time does not run backwards.
    with pytest.raises(InvalidInput, match="before the last recorded change"):
        history.record_reservations({}, t1 - timedelta(seconds=1))


def test_two_changes_at_one_moment_keep_only_the_last(history: ReservationHistory) -> None:
    key = ("amsterdam", "uitkering", "lab-1")
    history.record_reservations({key: Milli(1000, 2000, 10000)}, T0)
    t1 = T0 + timedelta(hours=2)
    history.record_reservations({key: Milli(2000, 2000, 10000)}, t1)
    history.record_reservations({key: Milli(3000, 2000, 10000)}, t1)
    got = history.intervals()
    assert [(iv.amount.vcpu, iv.start, iv.end) for iv in got] == [(1000, T0, t1), (3000, t1, None)]


def test_open_ledger_records_the_fleet_when_the_history_is_empty(
    history: ReservationHistory,
) -> None:
    fleet = load_fleet(LAB)
    book = load_costs(LAB, fleet)
    now = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
    ledger = open_ledger(fleet, book, history, now)
    assert history.first_recorded() == now
    # Declared history runs until the first stored record; the stored rows from then on.
    assert all(iv.end is not None and iv.end <= now for iv in ledger.history if iv.start < now)
    assert sum(1 for iv in ledger.history if iv.start == now) == 15
    november = ledger.allocation(Period(2026, 11))
    assert november.total == sum(book.costs(Period(2026, 11)).pools.values())
    # A second open records nothing new.
    open_ledger(fleet, book, history, now + timedelta(days=1))
    assert len(history.intervals()) == 15
