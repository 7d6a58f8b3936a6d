"""Exact allocation: each pool split to the cent by its key, bills, savings and metrics.

Pure ``Decimal`` money in, pure ``Decimal`` money out. Ratios are exact fractions
(``fractions.Fraction``), and a split hands out whole cents by largest remainder, so every
pool's split adds up to the pool and every bill to the sum of its lines, for any input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from controlplane.costs.metering import Metered, Usage
from controlplane.costs.model import (
    COOPERATIVE,
    CREDIT,
    AllocationKey,
    CostBook,
    IdlePolicy,
    Milli,
    Pool,
    StandaloneBasis,
)
from controlplane.costs.periods import Period
from controlplane.errors import InvalidInput, OperationFailed

ZERO = Decimal("0.00")

Weight = Fraction | Decimal | int


def to_cents(amount: Decimal) -> int:
    """Whole cents in ``amount``; refuses fractions of a cent and negative amounts."""
    cents = amount * 100
    if cents != cents.to_integral_value() or amount < 0:
        raise InvalidInput(f"{amount} is not a non-negative amount in whole cents")
    return int(cents)


def from_cents(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def round_cents(value: Fraction) -> Decimal:
    """Round an exact euro amount to the cent, halves away from zero."""
    sign = -1 if value < 0 else 1
    hundredths = abs(value) * 100
    cents = int(hundredths + Fraction(1, 2))  # int() truncates: floor for the positive value
    return from_cents(sign * cents)


def split(amount: Decimal, weights: Mapping[str, Weight]) -> dict[str, Decimal]:
    """Split ``amount`` in proportion to ``weights``, exactly, to the cent.

    Each party first gets its quota rounded down to the cent; the cents left over go one
    each to the largest remainders, ties broken by slug (alphabetically first wins), so
    the parts always add up to ``amount`` and none is more than a cent off its quota.
    """
    cents = to_cents(amount)
    exact = {k: Fraction(w) for k, w in weights.items()}
    if any(w < 0 for w in exact.values()):
        raise InvalidInput("split weights must not be negative")
    total = sum(exact.values(), Fraction(0))
    if total == 0:
        raise InvalidInput("nothing to split by: every weight is zero")
    floors: dict[str, int] = {}
    remainders: dict[str, Fraction] = {}
    for key, w in exact.items():
        quota = cents * w / total
        floors[key] = quota.numerator // quota.denominator
        remainders[key] = quota - floors[key]
    left = cents - sum(floors.values())
    for key in sorted(exact, key=lambda k: (-remainders[k], k))[:left]:
        floors[key] += 1
    return {key: from_cents(floors[key]) for key in weights}


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolSplit:
    """One pool's split: each member's share, and the cooperative's idle line."""

    pool: Pool
    amount: Decimal
    shares: Mapping[str, Decimal]
    ratios: Mapping[str, Fraction]  # each party's exact weight ratio before rounding
    cooperative: Decimal = ZERO  # idle capacity shown separately; zero unless the pool says so

    def __post_init__(self) -> None:
        if sum(self.shares.values(), self.cooperative) != self.amount:
            raise OperationFailed(f"pool {self.pool.slug} split does not add up to the pool")


@dataclass(frozen=True)
class Line:
    """One line of a member's bill: a pool share, or an in-kind credit (negative)."""

    pool: str  # pool slug, or CREDIT
    label: str
    amount: Decimal
    against: str | None = None  # for a credit: the pool it is set against


@dataclass(frozen=True)
class MemberCost:
    """One member's bill for a period, with what it would have paid elsewhere."""

    member: str
    lines: tuple[Line, ...]
    standalone: Decimal
    market: Decimal
    usage: Usage
    caseload: int | None
    total: Decimal = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", sum((ln.amount for ln in self.lines), ZERO))

    @property
    def gross(self) -> Decimal:
        """The member's share of the pools, before in-kind credits: its cost of membership."""
        return sum((ln.amount for ln in self.lines if ln.pool != CREDIT), ZERO)

    @property
    def credits(self) -> Decimal:
        """In-kind credits, as a positive amount."""
        return -sum((ln.amount for ln in self.lines if ln.pool == CREDIT), ZERO)

    def share(self, pool: str) -> Decimal:
        return sum((ln.amount for ln in self.lines if ln.pool == pool), ZERO)

    @property
    def saving_standalone(self) -> Decimal:
        return self.standalone - self.gross

    @property
    def saving_market(self) -> Decimal:
        return self.market - self.gross


@dataclass(frozen=True)
class Allocation:
    """A period's pools split between members, checked to add up on construction."""

    period: Period
    seconds: int
    pools: tuple[PoolSplit, ...]
    members: tuple[MemberCost, ...]

    def __post_init__(self) -> None:
        for bill in self.members:
            if bill.total != sum((ln.amount for ln in bill.lines), ZERO):
                raise OperationFailed(f"{bill.member}: total is not the sum of its lines")
        shared = sum((bill.gross for bill in self.members), self.cooperative)
        if shared != self.total:
            raise OperationFailed(f"{self.period}: member shares do not add up to the pools")

    @property
    def total(self) -> Decimal:
        return sum((p.amount for p in self.pools), ZERO)

    @property
    def cooperative(self) -> Decimal:
        return sum((p.cooperative for p in self.pools), ZERO)

    @property
    def credits(self) -> Decimal:
        return sum((bill.credits for bill in self.members), ZERO)

    @property
    def hours(self) -> Decimal:
        return Decimal(self.seconds) / 3600

    def member(self, slug: str) -> MemberCost:
        for bill in self.members:
            if bill.member == slug:
                return bill
        raise KeyError(slug)


# -- allocation ------------------------------------------------------------------------------


def reserved_weight(book: CostBook, held: Milli) -> Fraction:
    """Resource-seconds weighted by the unit rates (the scale cancels out of every ratio)."""
    rates = book.unit_rates
    return (
        Fraction(held.vcpu) * Fraction(rates.vcpu_hour)
        + Fraction(held.ram_gib) * Fraction(rates.ram_gib_hour)
        + Fraction(held.disk_gib) * Fraction(rates.disk_gib_hour)
    )


def _weights(
    book: CostBook, pool: Pool, period: Period, metered: Metered, capacity: Milli
) -> dict[str, Fraction]:
    costs = book.costs(period)
    members = book.members
    if pool.key is AllocationKey.EQUAL:
        return {m: Fraction(1) for m in members}
    if pool.key is AllocationKey.FIXED:
        assert pool.shares is not None  # checked by CostBook
        return {m: Fraction(pool.shares[m]) for m in members}
    if pool.key is AllocationKey.CASELOAD:
        return {m: Fraction(costs.caseload[m]) for m in members}
    weights = {m: reserved_weight(book, metered.usage(m).held) for m in members}
    reserved = sum(weights.values(), Fraction(0))
    if pool.idle is IdlePolicy.COOPERATIVE:
        # Capacity nobody reserved; never negative, even if history outgrew today's hosts.
        available = reserved_weight(book, capacity.times(metered.seconds))
        weights[COOPERATIVE] = max(available - reserved, Fraction(0))
    if not any(weights.values()):
        raise InvalidInput(
            f"pool {pool.slug}: nothing was reserved in {period}, so the reserved key has "
            "nothing to split by"
        )
    return weights


def _standalone(
    book: CostBook, member: str, usage: Usage, splits: Sequence[PoolSplit], seconds: int
) -> Decimal:
    ref = book.reference_host
    hosts = Fraction(ref.monthly_cost) * Fraction(usage.host_seconds, seconds)
    alone = round_cents(hosts)
    for s in splits:
        if s.pool.standalone is StandaloneBasis.FULL:
            alone += s.amount
        elif s.pool.standalone is StandaloneBasis.SAME:
            alone += s.shares[member]
    return alone


def _market(book: CostBook, usage: Usage) -> Decimal:
    prices = book.market
    v, r, d = usage.exact_hours()
    resources = (
        v * Fraction(prices.vcpu_hour)
        + r * Fraction(prices.ram_gib_hour)
        + d * Fraction(prices.disk_gib_hour)
    )
    fees = sum((prices.apps.get(app, ZERO) for app in sorted(usage.apps)), ZERO)
    return round_cents(resources) + fees


def allocate(book: CostBook, period: Period, metered: Metered, capacity: Milli) -> Allocation:
    """Split every pool of ``period`` by its key and build each member's bill.

    ``metered`` holds what each member reserved during the period; ``capacity`` is the
    hosts' total capacity, for the idle line of pools that show it separately.
    """
    costs = book.costs(period)
    splits: list[PoolSplit] = []
    for pool in book.pools:
        amount = costs.pools[pool.slug]
        if amount == 0:
            zero = {m: ZERO for m in book.members}
            splits.append(PoolSplit(pool, amount, zero, {m: Fraction(0) for m in book.members}))
            continue
        weights = _weights(book, pool, period, metered, capacity)
        parts = split(amount, weights)
        total = sum(weights.values(), Fraction(0))
        splits.append(
            PoolSplit(
                pool=pool,
                amount=amount,
                shares={m: parts[m] for m in book.members},
                ratios={k: w / total for k, w in weights.items()},
                cooperative=parts.get(COOPERATIVE, ZERO),
            )
        )
    bills = []
    for member in book.members:
        lines = [Line(s.pool.slug, s.pool.name, s.shares[member]) for s in splits]
        lines += [
            Line(CREDIT, c.description, -c.monthly, c.pool)
            for c in book.credits(period)
            if c.member == member
        ]
        usage = metered.usage(member)
        bills.append(
            MemberCost(
                member=member,
                lines=tuple(lines),
                standalone=_standalone(book, member, usage, splits, metered.seconds),
                market=_market(book, usage),
                usage=usage,
                caseload=costs.caseload.get(member),
            )
        )
    return Allocation(period, metered.seconds, tuple(splits), tuple(bills))


# -- metrics ---------------------------------------------------------------------------------

ALLOCATED_COST = "controlplane_member_allocated_cost_euros"
SHARE_RATIO = "controlplane_member_cost_share_ratio"


@dataclass(frozen=True)
class CostFigure:
    """One metric sample: ``pool`` is None for the share ratio."""

    metric: str
    member: str
    pool: str | None
    value: Decimal


def cost_figures(allocation: Allocation) -> list[CostFigure]:
    """The cost metrics of one period, for a Prometheus collector to expose.

    ``controlplane_member_allocated_cost_euros{member,pool}``: each member's share of each
    pool (before in-kind credits), plus ``member="cooperative"`` for idle capacity shown
    separately, so summing over members gives each pool. ``controlplane_member_cost_share_ratio
    {member}``: each party's share of all pools (0-1, six decimals), summing to one.
    """
    out: list[CostFigure] = []
    for s in allocation.pools:
        for member, amount in s.shares.items():
            out.append(CostFigure(ALLOCATED_COST, member, s.pool.slug, amount))
        if s.pool.idle is IdlePolicy.COOPERATIVE:
            out.append(CostFigure(ALLOCATED_COST, COOPERATIVE, s.pool.slug, s.cooperative))
    total = allocation.total
    parties = [(b.member, b.gross) for b in allocation.members]
    if any(s.pool.idle is IdlePolicy.COOPERATIVE for s in allocation.pools):
        parties.append((COOPERATIVE, allocation.cooperative))
    q = Decimal("0.000001")
    for member, amount in parties:
        ratio = (amount / total).quantize(q) if total else Decimal(0)
        out.append(CostFigure(SHARE_RATIO, member, None, ratio))
    return out
