"""Hypothesis properties: every split adds up to the cent, for any input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.costs.allocate import ZERO, allocate, from_cents, split
from controlplane.costs.metering import Metered, Usage, meter, meter_many
from controlplane.costs.model import (
    Contribution,
    CostBook,
    Interval,
    MarketPrices,
    Milli,
    PeriodCosts,
    Pool,
    ReferenceHost,
    UnitRates,
)
from controlplane.costs.periods import Period
from controlplane.fleet.model import Capacity

AMS = ZoneInfo("Europe/Amsterdam")
PERIOD = Period(2026, 10)
CENT = Decimal("0.01")

slugs = st.lists(
    st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,4})?", fullmatch=True).filter(
        lambda s: s != "cooperative"
    ),
    min_size=1,
    max_size=9,
    unique=True,
)
amounts = st.integers(min_value=0, max_value=10**11).map(from_cents)
weights = st.one_of(
    st.integers(min_value=0, max_value=10**9),
    st.fractions(min_value=0, max_value=10**6, max_denominator=10**6),
)


@given(amount=amounts, parties=slugs, data=st.data())
def test_split_adds_up_and_stays_within_a_cent_of_the_quota(
    amount: Decimal, parties: list[str], data: st.DataObject
) -> None:
    ws = {p: data.draw(weights, label=p) for p in parties}
    if not any(ws.values()):
        ws[parties[0]] = 1
    parts = split(amount, ws)
    assert sum(parts.values(), ZERO) == amount
    total = sum((Fraction(w) for w in ws.values()), Fraction(0))
    for party, part in parts.items():
        quota = Fraction(amount) * Fraction(ws[party]) / total
        assert part >= 0 and part == part.quantize(CENT)
        assert abs(Fraction(part) - quota) < Fraction(1, 100)
        if ws[party] == 0:
            assert part == 0
    # The order the parties come in changes nothing.
    assert split(amount, dict(reversed(list(ws.items())))) == parts


def _percentages(draw: st.DrawFn, members: list[str]) -> dict[str, Decimal]:
    """Fixed shares with up to four decimals that sum to exactly 100."""
    units = 1_000_000
    cuts = sorted(
        draw(st.lists(st.integers(0, units), min_size=len(members) - 1, max_size=len(members) - 1))
    )
    edges = [0, *cuts, units]
    return {m: Decimal(edges[i + 1] - edges[i]).scaleb(-4) for i, m in enumerate(members)}


@st.composite
def allocation_inputs(draw: st.DrawFn) -> tuple[CostBook, Metered, Milli]:
    members = draw(slugs)
    pools = []
    for i in range(draw(st.integers(1, 6))):
        key = draw(st.sampled_from(["equal", "fixed", "reserved", "caseload"]))
        pools.append(
            Pool(
                slug=f"pool{i}",
                name=f"Pool {i}",
                key=key,
                idle=draw(st.sampled_from(["share", "cooperative"]))
                if key == "reserved"
                else "share",
                standalone=draw(st.sampled_from(["hosts", "full", "same"])),
                shares=_percentages(draw, members) if key == "fixed" else None,
            )
        )
    caseload = {m: draw(st.integers(0, 10**6)) for m in members}
    if not any(caseload.values()):
        caseload[members[0]] = 1
    contributions = tuple(
        Contribution(member=m, description=f"in kind {m}", monthly=draw(amounts))
        for m in draw(st.lists(st.sampled_from(members), max_size=3))
    )
    book = CostBook(
        members=tuple(members),
        pools=tuple(pools),
        unit_rates=UnitRates(
            vcpu_hour=draw(st.decimals(Decimal("0.000001"), 10, places=6)),
            ram_gib_hour=draw(st.decimals(0, 10, places=6)),
            disk_gib_hour=draw(st.decimals(0, 10, places=6)),
        ),
        reference_host=ReferenceHost(
            capacity=Capacity(vcpu=8, ram_gib=32, disk_gib=200), monthly_cost=draw(amounts)
        ),
        market=MarketPrices(vcpu_hour=Decimal("0.04"), ram_gib_hour=0, disk_gib_hour=0),
        periods={
            PERIOD: PeriodCosts(pools={p.slug: draw(amounts) for p in pools}, caseload=caseload)
        },
        contributions=contributions,
    )
    seconds = PERIOD.seconds(AMS)
    held = st.integers(0, 64_000 * seconds)
    usage = {
        m: Usage(
            held=Milli(draw(held), draw(held), draw(held)),
            peak=Milli(0, 0, 0),
            host_seconds=draw(st.integers(0, 10 * seconds)),
            apps=frozenset(),
        )
        for m in members
    }
    first = members[0]  # someone reserved some vCPU, so a reserved key has a basis
    usage[first] = Usage(Milli(seconds * 1000, 0, 0), Milli(1000, 0, 0), seconds, frozenset())
    metered = Metered(PERIOD.start(AMS), PERIOD.end(AMS), usage)
    capacity = Milli(draw(st.integers(1, 10**6)), draw(st.integers(1, 10**7)), 10**8)
    return book, metered, capacity


@settings(max_examples=150, deadline=None)
@given(allocation_inputs())
def test_allocation_adds_up_for_any_input(inputs: tuple[CostBook, Metered, Milli]) -> None:
    book, metered, capacity = inputs
    a = allocate(book, PERIOD, metered, capacity)
    for s in a.pools:
        assert sum(s.shares.values(), s.cooperative) == s.amount
        assert all(v >= 0 and v == v.quantize(CENT) for v in s.shares.values())
        if s.amount:
            for party, ratio in s.ratios.items():
                part = s.shares.get(party, s.cooperative)
                assert abs(Fraction(part) - ratio * Fraction(s.amount)) < Fraction(1, 100)
    for bill in a.members:
        assert bill.total == sum(line.amount for line in bill.lines)
        assert bill.total == bill.gross - bill.credits
    assert sum(b.gross for b in a.members) + a.cooperative == a.total
    assert sum(b.total for b in a.members) + a.cooperative == a.total - a.credits


moments = st.integers(0, 400 * 24 * 3600).map(
    lambda s: datetime(2025, 12, 1, tzinfo=UTC) + timedelta(seconds=s)
)


@st.composite
def intervals(draw: st.DrawFn) -> list[Interval]:
    out = []
    for _ in range(draw(st.integers(0, 12))):
        start = draw(moments)
        end = draw(st.none() | moments.filter(lambda e, s=start: e > s))
        amount = Milli(draw(st.integers(0, 9000)), draw(st.integers(0, 9000)), 0)
        out.append(Interval(draw(st.sampled_from("ab")), "x", "h", amount, start, end))
    return out


@settings(max_examples=100, deadline=None)
@given(intervals(), st.data())
def test_metering_a_year_equals_the_sum_of_its_months(
    history: list[Interval], data: st.DataObject
) -> None:
    months = [Period(2026, m) for m in range(1, 13)]
    year = meter(history, months[0].start(AMS), months[-1].end(AMS))
    parts = meter_many(history, [(p.start(AMS), p.end(AMS)) for p in months])
    for member in "ab":
        total = [sum(m.usage(member).held[i] for m in parts) for i in range(3)]
        assert total == list(year.usage(member).held)
    # Cutting one interval in two at any moment inside it changes nothing.
    if history and history[0].end is not None:
        iv = history[0]
        span = int((iv.end - iv.start).total_seconds())  # type: ignore[operator]
        cut = iv.start + timedelta(seconds=data.draw(st.integers(1, max(span - 1, 1))))
        if iv.start < cut < iv.end:  # type: ignore[operator]
            halves = [
                Interval(iv.member, iv.app, iv.host, iv.amount, iv.start, cut),
                Interval(iv.member, iv.app, iv.host, iv.amount, cut, iv.end),
            ]
            again = meter([*halves, *history[1:]], months[0].start(AMS), months[-1].end(AMS))
            assert again.usage(iv.member).held == year.usage(iv.member).held
