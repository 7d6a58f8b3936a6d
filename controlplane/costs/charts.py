"""The report's charts: matplotlib figures rendered to inline SVG.

No pyplot and no global state: each chart builds its own ``Figure``. Output is
deterministic (fixed id salt, no date), so the same figures give the same SVG. Labels are
names from the fleet files and are drawn literally (no mathtext), whatever they contain.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

PALETTE = (
    "#1f4e79",
    "#e07b39",
    "#3b9c8f",
    "#c44e52",
    "#8172b2",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
    "#ccb974",
    "#64b5cd",
)
IDLE_COLOUR = "#c8c8c8"
RC: Any = {  # matplotlib types rcParams keys as literals
    # Labels are member and pool names: "$" in one must print as "$", not start mathtext.
    "text.parse_math": False,
    "svg.hashsalt": "controlplane-costs",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 9,
    "axes.titleweight": "bold",
}
_PROLOG = re.compile(r"^.*?(?=<svg)", re.DOTALL)


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _euros(value: float, _pos: Any = None) -> str:
    return f"€{value:,.0f}"


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    # Inline SVG: drop the XML declaration and doctype before the <svg> element.
    return _PROLOG.sub("", buf.getvalue(), count=1)


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def stacked_bars(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[Decimal], str]],
    title: str,
    horizontal: bool = True,
) -> str:
    """Bars per category, stacked by series (label, values, colour); a legend below."""
    import matplotlib
    from matplotlib.ticker import FuncFormatter

    with matplotlib.rc_context(RC):
        rows = max(len(categories), 1)
        fig = _figure(7.0, 0.9 + 0.38 * rows) if horizontal else _figure(7.0, 3.0)
        ax = fig.subplots()
        base = [0.0] * len(categories)
        for label, values, fill in series:
            data = [float(v) for v in values]
            if horizontal:
                ax.barh(categories, data, left=base, label=label, color=fill, height=0.6)
            else:
                ax.bar(categories, data, bottom=base, label=label, color=fill, width=0.7)
            base = [b + d for b, d in zip(base, data, strict=True)]
        axis = ax.xaxis if horizontal else ax.yaxis
        axis.set_major_formatter(FuncFormatter(_euros))
        if horizontal:
            ax.invert_yaxis()
        else:
            ax.tick_params(axis="x", labelrotation=0)
        ax.grid(axis="x" if horizontal else "y", color="#e6e6e6", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_title(title, loc="left")
        fig.legend(loc="outside lower center", ncols=min(len(series), 6), frameon=False)
        return _svg(fig)


def grouped_bars(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[Decimal], str]],
    title: str,
) -> str:
    """Horizontal bars per category, one per series side by side."""
    import matplotlib
    from matplotlib.ticker import FuncFormatter

    with matplotlib.rc_context(RC):
        rows = max(len(categories), 1)
        fig = _figure(7.0, 0.9 + 0.55 * rows)
        ax = fig.subplots()
        height = 0.8 / max(len(series), 1)
        for i, (label, values, fill) in enumerate(series):
            ys = [y + (i - (len(series) - 1) / 2) * height for y in range(len(categories))]
            ax.barh(ys, [float(v) for v in values], height=height, label=label, color=fill)
        ax.set_yticks(range(len(categories)), list(categories))
        ax.invert_yaxis()
        ax.xaxis.set_major_formatter(FuncFormatter(_euros))
        ax.grid(axis="x", color="#e6e6e6", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_title(title, loc="left")
        fig.legend(loc="outside lower center", ncols=len(series), frameon=False)
        return _svg(fig)
