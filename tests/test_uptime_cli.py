"""``controlplane uptime``: JSON and table output, --probe, and bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controlplane.cli import run
from controlplane.store.db import make_engine, migrate
from controlplane.uptime.probes import ProbeSample
from controlplane.uptime.store import ProbeStore
from tests.fleet_files import write_fleet
from tests.test_uptime_probes import FakeApp, tiny_fleet


@pytest.fixture
def apps() -> Iterator[list[FakeApp]]:
    started = [FakeApp("127.0.40.7"), FakeApp("127.0.40.8")]
    yield started
    for a in started:
        a.stop()


@pytest.fixture
def setup(
    apps: list[FakeApp], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, ProbeStore]:
    url = f"sqlite:///{tmp_path / 'cp.db'}"
    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CONTROLPLANE_DATABASE_URL", url)
    fleet_dir = write_fleet(tiny_fleet(apps, members=("amsterdam", "utrecht")), tmp_path / "fleet")
    engine = make_engine(url)
    migrate(engine)
    return fleet_dir, ProbeStore(engine)


def test_uptime_json_per_member_app_and_window(
    setup: tuple[Path, ProbeStore], apps: list[FakeApp], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet_dir, store = setup
    now = datetime.now(UTC)
    port = apps[0].port
    store.record(
        [
            ProbeSample(
                "amsterdam",
                "uitkering",
                "h0",
                port,
                now - timedelta(minutes=m),
                m != 3,
                m in (8, 9),
                0.01,
            )
            for m in range(10)
        ]
    )
    assert run(["uptime", "--json", "--fleet", str(fleet_dir), "--member", "amsterdam"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["member"], r["app"], r["window"]) for r in rows] == [
        ("amsterdam", "uitkering", w) for w in ("1h", "24h", "7d", "30d")
    ]
    hour = rows[0]
    assert hour["probes"] == 10 and hour["good"] == 9 and hour["in_window"] == 2
    assert hour["availability"] == pytest.approx(0.9)
    assert hour["sla_availability"] == pytest.approx(7 / 8)
    assert hour["slo"] == 0.995
    assert hour["error_budget_remaining"] == pytest.approx((0.9 - 0.995) / 0.005)
    assert hour["burn_rate"] == pytest.approx(0.1 / 0.005)

    assert run(["uptime", "--json", "--fleet", str(fleet_dir), "--window", "30d"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["member"], r["window"]) for r in rows] == [("amsterdam", "30d"), ("utrecht", "30d")]
    assert rows[1]["availability"] is None and rows[1]["probes"] == 0


def test_uptime_probe_then_table(
    setup: tuple[Path, ProbeStore], apps: list[FakeApp], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet_dir, store = setup
    apps[1].status = 500
    assert run(["uptime", "--probe", "--fleet", str(fleet_dir), "--window", "1h"]) == 0
    table = capsys.readouterr().out
    for word in ("amsterdam", "utrecht", "availability", "SLA", "burn rate", "100.000%", "0.000%"):
        assert word in table, table
    assert len(store.samples(datetime.now(UTC) - timedelta(minutes=1))) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "90d"], "window: '90d' is not one of 1h, 24h, 7d, 30d"),
        (["--member", "groningen"], "unknown member 'groningen'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    setup: tuple[Path, ProbeStore],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    fleet_dir, _ = setup
    assert run(["uptime", "--fleet", str(fleet_dir), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {message}"]
