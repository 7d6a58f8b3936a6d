"""The probe store, as one contract over SQLite and PostgreSQL (the ``engine`` fixture)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from controlplane.uptime.availability import Counts, Period
from controlplane.uptime.probes import ProbeSample
from controlplane.uptime.store import ProbeStore
from controlplane.uptime.summary import UptimeReader

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def sample(
    at: datetime,
    healthy: bool = True,
    in_window: bool = False,
    member: str = "amsterdam",
    app: str = "uitkering",
    host: str = "lab-1",
    port: int = 8101,
) -> ProbeSample:
    return ProbeSample(member, app, host, port, at, healthy, in_window, 0.004, "1.1.0", None)


@pytest.fixture
def store(engine: Engine) -> ProbeStore:
    return ProbeStore(engine)


def test_record_counts_each_sample_into_its_hour(store: ProbeStore) -> None:
    store.record(
        [
            sample(T0 + timedelta(minutes=1)),
            sample(T0 + timedelta(minutes=2), healthy=False),
            sample(T0 + timedelta(minutes=3), in_window=True, healthy=False),
            sample(T0 + timedelta(minutes=61)),
            sample(T0 + timedelta(minutes=1), host="lab-2"),
        ]
    )
    store.record([sample(T0 + timedelta(minutes=4), in_window=True)])
    rows = {(r["host"], r["hour"]): r for r in store.hourly_rows()}
    first = rows[("lab-1", T0)]
    assert (first["total"], first["good"], first["in_window"], first["good_in_window"]) == (
        4,
        2,
        2,
        1,
    )
    assert rows[("lab-1", T0 + timedelta(hours=1))]["total"] == 1
    assert rows[("lab-2", T0)]["total"] == 1
    got = store.samples(T0)
    assert len(got) == 6
    assert got[0].at == T0 + timedelta(minutes=1) and got[0].at.tzinfo is not None
    assert got[0].version == "1.1.0"


def test_expiry_rolls_old_samples_up_instead_of_dropping_them(store: ProbeStore) -> None:
    old = [sample(T0 + timedelta(minutes=m), healthy=m % 4 != 0) for m in range(0, 120, 2)]
    store.record(old)
    now = T0 + timedelta(days=10)
    reader_before = UptimeReader(store, grace=timedelta(0)).counts(now)
    removed = store.expire(T0 + timedelta(hours=1, minutes=30))
    assert removed == 45  # every sample before 10:30
    assert len(store.samples(T0)) == 15
    after = UptimeReader(store, grace=timedelta(0)).counts(now)
    assert after.periods[Period.MONTH] == reader_before.periods[Period.MONTH]
    assert after.totals[("amsterdam", "uitkering")] == Counts(60, 30, 0, 0)


def test_raw_counts_select_by_time_and_member(store: ProbeStore) -> None:
    store.record(
        [
            sample(T0, healthy=False),
            sample(T0 + timedelta(minutes=10)),
            sample(T0 + timedelta(minutes=20), in_window=True),
            sample(T0 + timedelta(minutes=10), member="utrecht", app="reintegratie"),
        ]
    )
    got = store.raw_counts(T0 + timedelta(minutes=5))
    assert got == {
        ("amsterdam", "uitkering"): Counts(2, 2, 1, 1),
        ("utrecht", "reintegratie"): Counts(1, 1, 0, 0),
    }
    assert store.raw_counts(T0, T0 + timedelta(minutes=15), member="amsterdam") == {
        ("amsterdam", "uitkering"): Counts(2, 1, 0, 0)
    }


def test_hourly_counts_for_several_starts_in_one_pass(store: ProbeStore) -> None:
    store.record([sample(T0 + timedelta(hours=h), healthy=h != 2) for h in range(5)])
    got = store.hourly_counts(
        [T0 + timedelta(hours=3), T0 + timedelta(hours=1), None], end=T0 + timedelta(hours=4)
    )
    assert got == {
        ("amsterdam", "uitkering"): [Counts(1, 1, 0, 0), Counts(3, 2, 0, 0), Counts(4, 3, 0, 0)]
    }
    assert store.hourly_counts([T0], member="nobody") == {}


def test_latest_is_each_instances_newest_sample(store: ProbeStore) -> None:
    store.record(
        [
            sample(T0, healthy=True),
            sample(T0 + timedelta(seconds=30), healthy=False),
            sample(T0, host="lab-2", healthy=True),
        ]
    )
    latest = store.latest(T0 - timedelta(minutes=5))
    assert {k: v.healthy for k, v in latest.items()} == {
        ("amsterdam", "uitkering", "lab-1", 8101): False,
        ("amsterdam", "uitkering", "lab-2", 8101): True,
    }
    assert store.latest(T0 + timedelta(minutes=1)) == {}
    assert store.last_probe_at() == T0 + timedelta(seconds=30)


def test_concurrent_writers_lose_no_counts(store: ProbeStore) -> None:
    # Two nodes recording into the same hourly rows at once: the upsert adds, never overwrites.
    def write(offset: int) -> None:
        for i in range(10):
            store.record(
                [sample(T0 + timedelta(seconds=offset + 2 * i), host=h) for h in ("a", "b")]
            )

    threads = [threading.Thread(target=write, args=(o,)) for o in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r["host"]: r["total"] for r in store.hourly_rows()} == {"a": 20, "b": 20}


def test_round_lock_admits_one_node_at_a_time(store: ProbeStore, engine: Engine) -> None:
    with store.round_lock() as first:
        assert first
        with ProbeStore(engine).round_lock() as second:
            # PostgreSQL's advisory lock keeps a second node out; SQLite is a single node.
            assert second is (engine.dialect.name != "postgresql")
    with store.round_lock() as again:
        assert again


def test_cached_reader_matches_a_fresh_read_as_time_moves(store: ProbeStore) -> None:
    cached = UptimeReader(store)
    now = T0 + timedelta(days=3)
    history = [
        sample(now - timedelta(minutes=m), healthy=m % 7 != 0, in_window=m % 50 == 0)
        for m in range(0, 3 * 24 * 60, 30)
    ]
    store.record(history)
    for step in range(6):
        now += timedelta(minutes=23)
        store.record([sample(now, healthy=step % 2 == 0), sample(now, host="lab-2")])
        fresh = UptimeReader(store).counts(now)
        assert cached.counts(now) == fresh
    month = fresh.periods[Period.MONTH][("amsterdam", "uitkering")]
    assert month == fresh.totals[("amsterdam", "uitkering")]
    assert month.total == len(history) + 12
    hour = fresh.periods[Period.HOUR][("amsterdam", "uitkering")]
    assert hour.total == 2 + 2 + 2  # the three rounds of the last hour, two instances


def test_cached_last_hour_is_exact_to_the_second(store: ProbeStore) -> None:
    # Samples every 20 s; the reader is asked at odd moments, so the hour's ends fall inside
    # 5-minute blocks, and blocks close, age out and are re-used between calls.
    start = T0 + timedelta(seconds=7)
    store.record(
        [
            sample(start + timedelta(seconds=20 * i), healthy=i % 9 != 0, in_window=i % 31 == 0)
            for i in range(3 * 180)
        ]
    )
    reader = UptimeReader(store)
    now = start + timedelta(minutes=61, seconds=13)
    for _ in range(12):
        now += timedelta(minutes=4, seconds=17)
        exact = store.raw_counts(now - timedelta(hours=1), now + timedelta(microseconds=1))
        assert reader.counts(now).periods[Period.HOUR] == exact
        assert exact[("amsterdam", "uitkering")].total in (180, 181)  # both ends included
