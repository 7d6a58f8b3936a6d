"""Load ``costs.yml`` from a fleet directory into a cross-checked ``CostBook``.

Every problem becomes one ``FleetInvalid`` line naming the file and the field, exactly as
for the fleet's own files (the same ``read_yaml`` and ``validate_as``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from controlplane.costs.model import (
    Contribution,
    CostBook,
    DeclaredReservation,
    Interval,
    MarketPrices,
    Milli,
    PeriodCosts,
    Pool,
    ReferenceHost,
    UnitRates,
)
from controlplane.costs.periods import Period
from controlplane.errors import FleetInvalid, InvalidInput
from controlplane.fleet.loader import read_yaml, validate_as
from controlplane.fleet.model import Fleet

COSTS_FILE = "costs.yml"
SECTIONS = (
    "currency",
    "pools",
    "unit_rates",
    "reference_host",
    "market",
    "contributions",
    "history",
    "periods",
)
REQUIRED = ("pools", "unit_rates", "reference_host", "market", "periods")


def costs_path(fleet_dir: Path) -> Path:
    return fleet_dir / COSTS_FILE


def load_costs(fleet_dir: Path, fleet: Fleet) -> CostBook:
    """Read and check ``<fleet_dir>/costs.yml`` against ``fleet``."""
    path = costs_path(fleet_dir)
    doc = read_yaml(path)
    try:
        return parse_costs(doc, fleet, source=str(path))
    except FleetInvalid as exc:
        raise exc.in_file(str(path)) from None


def parse_costs(doc: Any, fleet: Fleet, source: str | None = None) -> CostBook:
    """Check a parsed cost document; errors name the field (the caller adds the file)."""
    if not isinstance(doc, dict):
        raise FleetInvalid("", "must be a mapping at the top level")
    for key in doc:
        if key not in SECTIONS:
            raise FleetInvalid(str(key), "unknown field")
    for key in REQUIRED:
        if key not in doc:
            raise FleetInvalid(key, "required field is missing")
    if doc.get("currency", "EUR") != "EUR":
        raise FleetInvalid("currency", f"only EUR is supported, got {doc['currency']!r}")
    pools = validate_as(tuple[Pool, ...], _list(doc, "pools"), "pools")
    market = validate_as(MarketPrices, doc["market"], "market")
    for app in market.apps:
        if app not in {a.slug for a in fleet.apps}:
            raise FleetInvalid(f"market.apps.{app}", f"unknown app {app!r}")
    return CostBook(
        members=tuple(m.slug for m in fleet.members),
        pools=pools,
        unit_rates=validate_as(UnitRates, doc["unit_rates"], "unit_rates"),
        reference_host=validate_as(ReferenceHost, doc["reference_host"], "reference_host"),
        market=market,
        periods=_periods(doc["periods"]),
        contributions=validate_as(
            tuple[Contribution, ...], _list(doc, "contributions"), "contributions"
        ),
        history=_history(_list(doc, "history"), fleet),
        source=source,
    )


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    raw = doc.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise FleetInvalid(key, "must be a list")
    return raw


def _periods(raw: Any) -> dict[Period, PeriodCosts]:
    if not isinstance(raw, dict) or not raw:
        raise FleetInvalid("periods", "must map months like 2026-10 to their pools")
    out: dict[Period, PeriodCosts] = {}
    for key, body in raw.items():
        try:
            period = Period.parse(key)
        except InvalidInput as exc:
            raise FleetInvalid(f"periods.{key}", str(exc)) from None
        out[period] = validate_as(PeriodCosts, body, f"periods.{key}")
    return dict(sorted(out.items()))


def _moment(value: datetime | date, zone: ZoneInfo) -> datetime:
    """A date means local midnight; a naive time is local; either way the result is UTC."""
    if isinstance(value, datetime):
        local = value if value.tzinfo is not None else value.replace(tzinfo=zone)
    else:
        local = datetime(value.year, value.month, value.day, tzinfo=zone)
    return local.astimezone(UTC)


def _history(raw: list[Any], fleet: Fleet) -> tuple[Interval, ...]:
    zone = ZoneInfo(fleet.timezone)
    declared = validate_as(tuple[DeclaredReservation, ...], raw, "history")
    apps = {a.slug: a for a in fleet.apps}
    hosts = {h.name for h in fleet.hosts}
    members = {m.slug for m in fleet.members}
    out: list[Interval] = []
    for i, item in enumerate(declared):
        at = f"history[{i}]"
        if item.member not in members:
            raise FleetInvalid(f"{at}.member", f"unknown member {item.member!r}")
        if item.app not in apps:
            raise FleetInvalid(f"{at}.app", f"unknown app {item.app!r}")
        for j, host in enumerate(item.hosts):
            if host not in hosts:
                raise FleetInvalid(f"{at}.hosts[{j}]", f"unknown host {host!r}")
        start = _moment(item.since, zone)
        end = None if item.until is None else _moment(item.until, zone)
        if end is not None and end <= start:
            raise FleetInvalid(f"{at}.until", "must be after since")
        amount = Milli.of(item.resources or apps[item.app].resources)
        out.extend(Interval(item.member, item.app, host, amount, start, end) for host in item.hosts)
    return tuple(out)
