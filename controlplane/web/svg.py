"""Charts for the web pages, drawn on the server as inline SVG (no script, no library).

Pure functions: data in, markup out. Colours are presentation attributes (the pages' CSP
forbids ``style`` attributes) and never carry meaning alone: every bar, band and line has
a ``<title>`` (a tooltip and what a screen reader reads), the chart a ``<title>`` and a
``<desc>`` summing it up, and the page shows the same numbers in a table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

OK = "#1a7f37"
BAD = "#cf222e"
NO_DATA = "#d0d7de"
GRID = "#d0d7de"
INK = "#57606a"
SHADE = "#8250df"
PALETTE = ("#1f4e79", "#e07b39", "#3b9c8f", "#c44e52", "#8172b2", "#937860", "#8c8c8c")
# Axis floors, from the closest to 100 %: the largest one below every bar and the SLO.
FLOORS = (0.999, 0.99, 0.95, 0.9, 0.8, 0.5, 0.0)
MIN_BAR = 2.0  # px: a measured bucket is never invisible, even at the axis floor


@dataclass(frozen=True)
class Bucket:
    """Availability over [start, end) (UTC): ``value`` 0..1, or None without probes.

    ``sla`` is the figure that leaves out probes taken in maintenance windows (None when
    all of them were); the bar is judged against the SLO by it when given."""

    start: datetime
    end: datetime
    value: float | None
    probes: int = 0
    sla: float | None = None
    in_window: int = 0

    @property
    def maintenance_only(self) -> bool:
        return self.probes > 0 and self.in_window == self.probes

    @property
    def judged(self) -> float | None:
        return self.sla if self.sla is not None else self.value


@dataclass(frozen=True)
class Box:
    """The plot area inside an SVG of ``width`` x ``height``."""

    width: int
    height: int
    left: int = 56
    right: int = 12
    top: int = 12
    bottom: int = 30

    @property
    def x0(self) -> float:
        return float(self.left)

    @property
    def x1(self) -> float:
        return float(self.width - self.right)

    @property
    def y0(self) -> float:  # the baseline (bottom of the plot)
        return float(self.height - self.bottom)

    @property
    def y1(self) -> float:
        return float(self.top)


def percent(value: float, floor: float = 0.99) -> str:
    """``99.95 %`` near the top of the scale, ``87.5 %`` further down."""
    digits = 2 if floor >= 0.99 else 1
    return f"{value * 100:.{digits}f} %"


def axis_floor(values: Sequence[float | None], slo: float | None = None) -> float:
    """The bottom of the availability axis: the largest of ``FLOORS`` below every value
    (and the SLO), so the worst bucket still shows as a bar above it."""
    known = [v for v in values if v is not None]
    if slo is not None:
        known.append(slo)
    lowest = min(known, default=1.0)
    return next(f for f in FLOORS if f < lowest or f == 0.0)


def _n(value: float) -> str:
    """A coordinate: two decimals at most, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _time_ticks(start: datetime, end: datetime, zone: ZoneInfo) -> list[tuple[datetime, str]]:
    """Tick instants at local hour or midnight boundaries, at most about eight."""
    span = end - start
    if span <= timedelta(days=2):
        step_hours = next(h for h in (1, 2, 3, 6, 12, 24) if span / timedelta(hours=h) <= 8)
        at = start.astimezone(zone).replace(minute=0, second=0, microsecond=0)
        ticks: list[tuple[datetime, str]] = []
        instant = at.astimezone(UTC)
        while instant <= end:
            local = instant.astimezone(zone)
            if instant >= start and local.hour % step_hours == 0 and local.minute == 0:
                ticks.append((instant, local.strftime("%H:%M")))
            instant += timedelta(hours=1)
        return ticks
    days = span / timedelta(days=1)
    step = next(d for d in (1, 2, 5, 7, 14) if days / d <= 8)
    fmt = "%a %d" if step == 1 else "%d %b"
    first: date = start.astimezone(zone).date()
    out: list[tuple[datetime, str]] = []
    d = first
    while True:
        midnight = datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC)
        if midnight > end:
            return out
        if midnight >= start and (d - first).days % step == 0:
            out.append((midnight, midnight.astimezone(zone).strftime(fmt)))
        d += timedelta(days=1)


def availability_chart(
    buckets: Sequence[Bucket],
    maintenance: Sequence[tuple[datetime, datetime]],
    *,
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    title: str,
    key: str,
    slo: float | None = None,
    width: int = 600,
    height: int = 170,
) -> Markup:
    """Availability per bucket as bars over [start, end), maintenance windows shaded
    (hatched) behind them, the SLO as a dashed line. ``key`` makes the SVG's ids unique."""
    box = Box(width, height)
    total = (end - start).total_seconds() or 1.0
    floor = axis_floor([b.value for b in buckets], slo)

    def x(at: datetime) -> float:
        share = (min(max(at, start), end) - start).total_seconds() / total
        return box.x0 + share * (box.x1 - box.x0)

    def y(value: float) -> float:
        share = (value - floor) / (1.0 - floor) if floor < 1.0 else 1.0
        return box.y0 - max(0.0, min(1.0, share)) * (box.y0 - box.y1)

    def when(a: datetime, b: datetime) -> str:
        la, lb = a.astimezone(zone), b.astimezone(zone)
        tail = "%H:%M" if la.date() == lb.date() else "%a %d %b %H:%M"
        return f"{la:%a %d %b %H:%M} to {lb.strftime(tail)}"

    ident = "chart-" + "".join(c if c.isalnum() else "-" for c in key)
    parts: list[str] = []
    shown = [(a, b) for a, b in maintenance if b > start and a < end]
    measured = [b for b in buckets if b.value is not None]
    worst = min(measured, key=lambda b: (b.value, b.start), default=None)
    summary = [f"{len(measured)} of {len(buckets)} periods measured"]
    if worst is not None and worst.value is not None:
        summary.append(f"lowest {percent(worst.value, floor)} ({when(worst.start, worst.end)})")
    if slo is not None:
        below = sum(
            1
            for b in measured
            if not b.maintenance_only and b.judged is not None and b.judged < slo
        )
        summary.append(f"{below} below the SLO of {percent(slo, floor)}")
    summary.append(f"{len(shown)} maintenance windows shaded")
    parts.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-labelledby="{ident}-t {ident}-d">'
        f'<title id="{ident}-t">{escape(title)}</title>'
        f'<desc id="{ident}-d">{escape("; ".join(summary))}.</desc>'
        f'<defs><pattern id="{ident}-hatch" width="6" height="6" '
        f'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="{SHADE}" fill-opacity="0.10"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="{SHADE}" stroke-width="2" '
        f'stroke-opacity="0.45"/></pattern></defs>'
    )
    for m_start, m_end in shown:
        x_a, x_b = x(m_start), x(m_end)
        parts.append(
            f'<rect class="maintenance" x="{_n(x_a)}" y="{_n(box.y1)}" '
            f'width="{_n(max(1.0, x_b - x_a))}" height="{_n(box.y0 - box.y1)}" '
            f'fill="url(#{ident}-hatch)"><title>Maintenance window, '
            f"{escape(when(m_start, m_end))}</title></rect>"
        )
    for tick in (floor, (floor + 1.0) / 2, 1.0):
        parts.append(
            f'<line x1="{_n(box.x0)}" y1="{_n(y(tick))}" x2="{_n(box.x1)}" y2="{_n(y(tick))}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{_n(box.x0 - 6)}" y="{_n(y(tick) + 4)}" text-anchor="end" '
            f'font-size="11" fill="{INK}">{escape(percent(tick, floor))}</text>'
        )
    for b in buckets:
        x_a, x_b = x(b.start), x(b.end)
        bar_width = max(1.0, (x_b - x_a) * 0.85)
        label = when(b.start, b.end)
        if b.value is None:
            parts.append(
                f'<rect class="no-data" x="{_n(x_a)}" y="{_n(box.y0 - MIN_BAR)}" '
                f'width="{_n(bar_width)}" height="{_n(MIN_BAR)}" fill="{NO_DATA}">'
                f"<title>{escape(label)}: no probes</title></rect>"
            )
            continue
        top = min(y(b.value), box.y0 - MIN_BAR)
        text = f"{label}: {percent(b.value, floor)}"
        if b.maintenance_only:
            css, fill = "maintenance-only", SHADE
            text += ", all in a maintenance window (not counted)"
        else:
            judged = b.judged
            good = slo is None or judged is None or judged >= slo
            css, fill = ("ok", OK) if good else ("bad", BAD)
            if b.in_window:
                text += f", {percent(judged or 0.0, floor)} outside maintenance"
            if slo is not None:
                text += ", meets the SLO" if good else ", below the SLO"
        parts.append(
            f'<rect class="{css}" x="{_n(x_a)}" y="{_n(top)}" width="{_n(bar_width)}" '
            f'height="{_n(box.y0 - top)}" fill="{fill}">'
            f"<title>{escape(text)} ({b.probes} probes)</title></rect>"
        )
    if slo is not None and slo > floor:
        parts.append(
            f'<line class="slo" x1="{_n(box.x0)}" y1="{_n(y(slo))}" x2="{_n(box.x1)}" '
            f'y2="{_n(y(slo))}" stroke="{INK}" stroke-width="1.5" stroke-dasharray="5 3">'
            f"<title>SLO {escape(percent(slo, floor))}</title></line>"
            f'<text x="{_n(box.x1)}" y="{_n(y(slo) - 4)}" text-anchor="end" font-size="11" '
            f'fill="{INK}">SLO {escape(percent(slo, floor))}</text>'
        )
    parts.append(
        f'<line x1="{_n(box.x0)}" y1="{_n(box.y0)}" x2="{_n(box.x1)}" y2="{_n(box.y0)}" '
        f'stroke="{INK}" stroke-width="1"/>'
    )
    for at, text in _time_ticks(start, end, zone):
        parts.append(
            f'<text x="{_n(x(at))}" y="{_n(box.y0 + 18)}" text-anchor="middle" font-size="11" '
            f'fill="{INK}">{escape(text)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice_step(top: float) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving four or five ticks."""
    if top <= 0:
        return 1.0
    raw = top / 4
    power = 10 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def stacked_bars(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[Decimal | None]]],
    *,
    title: str,
    key: str,
    unit: str = "€",
    width: int = 720,
    height: int = 220,
) -> Markup:
    """One stacked bar per label (a month), one segment per series (a member); a missing
    value (None) leaves the whole bar out and says so."""
    box = Box(width, height, left=64, top=32)
    totals: list[Decimal | None] = []
    for i in range(len(labels)):
        column = [values[i] for _, values in series]
        known = [v for v in column if v is not None]
        totals.append(sum(known, Decimal(0)) if len(known) == len(column) else None)
    top = float(max((t for t in totals if t is not None), default=Decimal(0)))
    step = _nice_step(top)
    ceiling = step * max(1, math.ceil(top / step)) if top > 0 else 1.0
    ident = "chart-" + "".join(c if c.isalnum() else "-" for c in key)
    slot = (box.x1 - box.x0) / max(1, len(labels))

    def y(value: float) -> float:
        return box.y0 - (value / ceiling) * (box.y0 - box.y1)

    def money(value: float | Decimal) -> str:
        return f"{unit}\u00a0{value:,.0f}"

    given = [t for t in totals if t is not None]
    desc = f"{len(given)} of {len(labels)} months with figures"
    if given:
        desc += f"; highest {money(max(given))}, lowest {money(min(given))}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-labelledby="{ident}-t {ident}-d">'
        f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(desc)}.</desc>'
    ]
    legend_x = box.x0
    for j, (name, _) in enumerate(series):
        parts.append(
            f'<rect x="{_n(legend_x)}" y="6" width="10" height="10" '
            f'fill="{PALETTE[j % len(PALETTE)]}"/><text x="{_n(legend_x + 14)}" y="15" '
            f'font-size="11" fill="{INK}">{escape(name)}</text>'
        )
        legend_x += 14 + 6.5 * len(name) + 14
    tick = 0.0
    while tick <= ceiling + 1e-9:
        parts.append(
            f'<line x1="{_n(box.x0)}" y1="{_n(y(tick))}" x2="{_n(box.x1)}" y2="{_n(y(tick))}" '
            f'stroke="{GRID}" stroke-width="1"/><text x="{_n(box.x0 - 6)}" y="{_n(y(tick) + 4)}" '
            f'text-anchor="end" font-size="11" fill="{INK}">{escape(money(tick))}</text>'
        )
        tick += step
    for i, label in enumerate(labels):
        left = box.x0 + i * slot + slot * 0.15
        bar = slot * 0.7
        parts.append(
            f'<text x="{_n(left + bar / 2)}" y="{_n(box.y0 + 18)}" text-anchor="middle" '
            f'font-size="11" fill="{INK}">{escape(label)}</text>'
        )
        if totals[i] is None:
            parts.append(
                f'<text x="{_n(left + bar / 2)}" y="{_n(box.y0 - 6)}" text-anchor="middle" '
                f'font-size="11" fill="{INK}">n/a<title>{escape(label)}: no figures</title></text>'
            )
            continue
        base = 0.0
        for j, (name, values) in enumerate(series):
            value = float(values[i] or 0)
            if value <= 0:
                continue
            y_top, y_bottom = y(base + value), y(base)
            parts.append(
                f'<rect x="{_n(left)}" y="{_n(y_top)}" width="{_n(bar)}" '
                f'height="{_n(y_bottom - y_top)}" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{escape(label)}, {escape(name)}: {escape(money(value))}</title></rect>"
            )
            base += value
    parts.append(
        f'<line x1="{_n(box.x0)}" y1="{_n(box.y0)}" x2="{_n(box.x1)}" y2="{_n(box.y0)}" '
        f'stroke="{INK}" stroke-width="1"/></svg>'
    )
    return Markup("".join(parts))
