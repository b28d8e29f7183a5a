"""Charts for the stats page as inline SVG, drawn on the server: no chart library, no JS.

A chart is bars per day, stacked when it has several series (completed, failed, killed);
each bar has a <title>, so hovering (or a long press on a phone) tells its numbers. The
SVG scales to its container's width (viewBox), so it fits a phone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 600, 170
LEFT, BOTTOM, TOP = 44, 22, 10      # room for the axis labels


@dataclass(frozen=True)
class Series:
    name: str
    css: str                        # class of its bars (colour in app.css)
    values: Sequence[float]


def bars(title: str, days: Sequence[str], series: Sequence[Series],
         label: Callable[[float], str] = lambda v: f"{v:,.0f}") -> Markup:
    """A bar chart over `days` (YYYY-MM-DD), the series stacked bottom up."""
    if not days:
        return Markup('<p class="muted">no finished jobs in this period</p>')
    totals = [sum(s.values[i] for s in series) for i in range(len(days))]
    top = max(totals) or 1.0
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    step = plot_w / len(days)
    bar_w = max(1.0, step * 0.8)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(title)}" preserveAspectRatio="xMinYMin meet">',
             f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 4}" y2="{TOP + plot_h}"/>',
             f'<text class="tick" x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{escape(label(top))}</text>',
             f'<text class="tick" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>']
    for i, day in enumerate(days):
        x = LEFT + i * step + (step - bar_w) / 2
        y = float(TOP + plot_h)
        tip = ", ".join(f"{s.name} {label(s.values[i])}" for s in series)
        for s in series:
            h = plot_h * s.values[i] / top
            if h <= 0:
                continue
            y -= h
            parts.append(f'<rect class="{s.css}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                         f'height="{h:.1f}"><title>{escape(day)}: {escape(tip)}</title></rect>')
    for i in sorted({0, len(days) - 1}):
        anchor = "start" if i == 0 else "end"
        x = LEFT if i == 0 else WIDTH - 4
        parts.append(f'<text class="tick" x="{x}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
                     f'{escape(days[i][5:])}</text>')
    parts.append("</svg>")
    if len(series) > 1:
        parts.append('<p class="legend">' + " ".join(
            f'<span class="key {s.css}"></span>{escape(s.name)}' for s in series) + "</p>")
    return Markup("".join(parts))
