"""The pure cost model: periods, cost pools and their keys, the cost book, reservation intervals.

Money is ``Decimal`` euros in whole cents. Resources are held as integer thousandths
(milli-vCPU, milli-GiB), exactly what the fleet model allows, so metering never rounds.
File-facing records are pydantic dataclasses checked field by field on construction;
``CostBook`` cross-checks them against each other and the fleet's members.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, NamedTuple

from pydantic import AfterValidator, Field, StrictStr, field_validator, model_validator
from pydantic.dataclasses import dataclass as record

from controlplane.costs.periods import Period
from controlplane.errors import FleetInvalid, InvalidInput
from controlplane.fleet.model import STRICT, Capacity, Resources, Slug

COOPERATIVE = "cooperative"  # the account that carries idle capacity shown as its own line
CREDIT = "in-kind-credit"  # the line of an in-kind contribution on a member's bill

CENT = Decimal("0.01")

Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=2),
    AfterValidator(lambda amount: amount.quantize(CENT)),
]
Rate = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=6)]
Percent = Annotated[Decimal, Field(ge=0, le=100, max_digits=9, decimal_places=4)]
Count = Annotated[int, Field(ge=0, strict=True)]

# -- keys and policies -----------------------------------------------------------------------


class AllocationKey(Enum):
    """How a pool is split between members."""

    EQUAL = "equal"
    FIXED = "fixed"
    RESERVED = "reserved"
    CASELOAD = "caseload"

    @property
    def describe(self) -> str:
        return {
            AllocationKey.EQUAL: "split evenly between members",
            AllocationKey.FIXED: "board-set fixed shares",
            AllocationKey.RESERVED: "reserved vCPU-, RAM- and disk-hours, weighted by unit rates",
            AllocationKey.CASELOAD: "benefit recipients per member",
        }[self]


class IdlePolicy(Enum):
    """What happens to host capacity nobody reserved (reserved key only)."""

    SHARE = "share"  # shared in proportion to reservations
    COOPERATIVE = "cooperative"  # shown as the cooperative's own line


class StandaloneBasis(Enum):
    """What a member going it alone would pay for this pool."""

    HOSTS = "hosts"  # replaced by its own dedicated hosts of the reference size
    FULL = "full"  # the whole pool: a fixed cost it would bear alone
    SAME = "same"  # the same as its share here (e.g. licences priced per recipient)


# -- resources over time ---------------------------------------------------------------------


class Milli(NamedTuple):
    """Resources in thousandths: milli-vCPU, milli-GiB RAM, milli-GiB disk."""

    vcpu: int
    ram_gib: int
    disk_gib: int

    @classmethod
    def of(cls, resources: Resources) -> Milli:
        return cls(*(int(amount * 1000) for _, amount in resources.items()))

    def plus(self, other: Milli) -> Milli:
        return Milli(
            self.vcpu + other.vcpu, self.ram_gib + other.ram_gib, self.disk_gib + other.disk_gib
        )

    def times(self, factor: int) -> Milli:
        return Milli(self.vcpu * factor, self.ram_gib * factor, self.disk_gib * factor)

    @property
    def resources(self) -> Resources:
        return Resources(*(Decimal(v).scaleb(-3) for v in self))


NO_RESOURCES = Milli(0, 0, 0)


@dataclass(frozen=True, slots=True)
class Interval:
    """What one member's app held on one host from ``start`` until ``end`` (open: still held)."""

    member: str
    app: str
    host: str
    amount: Milli
    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or (self.end is not None and self.end.tzinfo is None):
            raise InvalidInput("reservation times must carry a time zone")
        if self.end is not None and self.end <= self.start:
            raise InvalidInput(
                f"reservation of {self.member}/{self.app} on {self.host} ends "
                f"({self.end.isoformat()}) before it starts ({self.start.isoformat()})"
            )


# -- the cost file's records -----------------------------------------------------------------


@record(frozen=True, config=STRICT)
class Pool:
    """One cost pool, its allocation key, and what a member would pay for it alone."""

    slug: Slug
    name: StrictStr
    key: AllocationKey
    idle: IdlePolicy = IdlePolicy.SHARE
    standalone: StandaloneBasis = StandaloneBasis.SAME
    shares: dict[Slug, Percent] | None = None  # percentages, fixed key only
    service: StrictStr | None = None  # FOCUS ServiceName; the pool's name when absent

    @property
    def service_name(self) -> str:
        return self.service or self.name


@record(frozen=True, config=STRICT)
class UnitRates:
    """Weights of a reserved vCPU-hour, RAM GiB-hour and disk GiB-hour under the reserved key."""

    vcpu_hour: Rate
    ram_gib_hour: Rate
    disk_gib_hour: Rate

    @model_validator(mode="after")
    def _some_weight(self) -> UnitRates:
        if not (self.vcpu_hour or self.ram_gib_hour or self.disk_gib_hour):
            raise ValueError("at least one unit rate must be above zero")
        return self


@record(frozen=True, config=STRICT)
class ReferenceHost:
    """The host a member would buy to go it alone, and what one costs per month."""

    capacity: Capacity
    monthly_cost: Money
    min_hosts: int = Field(default=1, ge=1, le=1000, strict=True)


@record(frozen=True, config=STRICT)
class MarketPrices:
    """A market price list: hourly resource prices and a monthly fee per hosted app."""

    vcpu_hour: Rate
    ram_gib_hour: Rate
    disk_gib_hour: Rate
    apps: dict[Slug, Money] = Field(default_factory=dict)
    source: StrictStr = ""


def _check_month(value: str | None) -> str | None:
    if value is not None:
        Period.parse(value)
    return value


@record(frozen=True, config=STRICT)
class Contribution:
    """An in-kind contribution: a monthly credit against the contributing member's share."""

    member: Slug
    description: StrictStr
    monthly: Money
    pool: Slug | None = None  # the pool it is set against, for the report and the CSV
    since: StrictStr | None = None  # first month it applies (inclusive)
    until: StrictStr | None = None  # last month it applies (inclusive)

    @field_validator("since", "until")
    @classmethod
    def _months(cls, value: str | None) -> str | None:
        return _check_month(value)

    def applies(self, period: Period) -> bool:
        if self.since is not None and period < Period.parse(self.since):
            return False
        return self.until is None or period <= Period.parse(self.until)


@record(frozen=True, config=STRICT)
class PeriodCosts:
    """One month: each pool's amount, and the caseload (benefit recipients) per member."""

    pools: dict[Slug, Money]
    caseload: dict[Slug, Count] = Field(default_factory=dict)


@record(frozen=True, config=STRICT)
class DeclaredReservation:
    """A past reservation written into the cost file: one replica per listed host."""

    member: Slug
    app: Slug
    hosts: Annotated[tuple[StrictStr, ...], Field(min_length=1)]
    since: datetime | date
    until: datetime | date | None = None
    resources: Resources | None = None  # per replica; the app catalogue's when absent


# -- the cost book ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CostBook:
    """Everything the cost file says, cross-checked against the fleet's members."""

    members: tuple[str, ...]
    pools: tuple[Pool, ...]
    unit_rates: UnitRates
    reference_host: ReferenceHost
    market: MarketPrices
    periods: Mapping[Period, PeriodCosts]
    contributions: tuple[Contribution, ...] = ()
    history: tuple[Interval, ...] = ()
    source: str | None = None  # the file, named in errors found after loading

    def __post_init__(self) -> None:
        self._check_members()
        self._check_pools()
        self._check_contributions()
        for period, costs in self.periods.items():
            self._check_period(period, costs)

    def _fail(self, field: str, problem: str) -> FleetInvalid:
        return FleetInvalid(field, problem, self.source)

    def _check_members(self) -> None:
        if not self.members:
            raise self._fail("", "the fleet has no members to share costs between")
        if COOPERATIVE in self.members:
            raise self._fail("", f"{COOPERATIVE!r} is reserved for the idle-capacity line")
        if len(set(self.members)) != len(self.members):
            raise self._fail("", "a member is listed twice")

    def _check_pools(self) -> None:
        if not self.pools:
            raise self._fail("pools", "at least one cost pool is required")
        seen: set[str] = set()
        for pool in self.pools:
            at = f"pools[{pool.slug}]"
            if pool.slug in seen:
                raise self._fail(f"{at}.slug", f"duplicate pool {pool.slug!r}")
            seen.add(pool.slug)
            if pool.idle is IdlePolicy.COOPERATIVE and pool.key is not AllocationKey.RESERVED:
                raise self._fail(
                    f"{at}.idle", "only a pool with the reserved key has idle capacity to show"
                )
            if pool.key is not AllocationKey.FIXED:
                if pool.shares is not None:
                    raise self._fail(f"{at}.shares", "shares apply only to the fixed key")
                continue
            if pool.shares is None:
                raise self._fail(f"{at}.shares", "the fixed key needs a share for every member")
            for member in pool.shares:
                if member not in self.members:
                    raise self._fail(f"{at}.shares.{member}", f"unknown member {member!r}")
            for member in self.members:
                if member not in pool.shares:
                    raise self._fail(
                        f"{at}.shares.{member}",
                        "required field is missing: the fixed key needs a share for every member",
                    )
            total = sum(pool.shares.values(), Decimal(0))
            if total != 100:
                raise self._fail(f"{at}.shares", f"shares sum to {total}%, not 100%")

    def _check_contributions(self) -> None:
        pools = {p.slug for p in self.pools}
        for i, c in enumerate(self.contributions):
            at = f"contributions[{i}]"
            if c.member not in self.members:
                raise self._fail(f"{at}.member", f"unknown member {c.member!r}")
            if c.pool is not None and c.pool not in pools:
                raise self._fail(f"{at}.pool", f"unknown pool {c.pool!r}")
            if c.since and c.until and Period.parse(c.until) < Period.parse(c.since):
                raise self._fail(f"{at}.until", f"{c.until} is before since {c.since}")

    def _check_period(self, period: Period, costs: PeriodCosts) -> None:
        at = f"periods.{period}"
        for pool in self.pools:
            if pool.slug not in costs.pools:
                raise self._fail(f"{at}.pools.{pool.slug}", "required field is missing")
        for slug in costs.pools:
            if slug not in {p.slug for p in self.pools}:
                raise self._fail(f"{at}.pools.{slug}", f"unknown pool {slug!r}")
        for member in costs.caseload:
            if member not in self.members:
                raise self._fail(f"{at}.caseload.{member}", f"unknown member {member!r}")
        by_caseload = [p.slug for p in self.pools if p.key is AllocationKey.CASELOAD]
        if not by_caseload:
            return
        for member in self.members:
            if member not in costs.caseload:
                raise self._fail(
                    f"{at}.caseload.{member}",
                    f"required field is missing: pool {by_caseload[0]} is split by caseload",
                )
        if not any(costs.caseload.values()):
            raise self._fail(f"{at}.caseload", "every caseload is zero: nothing to split by")

    # -- lookups -------------------------------------------------------------------------------

    def costs(self, period: Period) -> PeriodCosts:
        """The period's figures; a period the file does not cover is bad input."""
        try:
            return self.periods[period]
        except KeyError:
            raise self._fail(f"periods.{period}", "no cost data for this period") from None

    def has(self, period: Period) -> bool:
        return period in self.periods

    def credits(self, period: Period) -> tuple[Contribution, ...]:
        return tuple(c for c in self.contributions if c.applies(period))
