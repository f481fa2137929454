"""The home page's small trend: this week's complaints and help requests by category against last
week's, and the on-time rate of both weeks. The figures are the statistics queries
(``models.statistics``); the chart is server-drawn SVG like the dashboard's, no script."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree import ElementTree

from flask_babel import gettext as _
from markupsafe import Markup

from models import statistics as stats
from views.statistics_output import FONT, percent


@dataclass
class Pair:
    label: str
    this: int
    last: int


@dataclass
class Trend:
    rows: list[Pair]
    on_time_this: float | None
    on_time_last: float | None
    chart: Markup

    @property
    def on_time_text(self) -> tuple[str, str]:
        return percent(self.on_time_this), percent(self.on_time_last)


def _pairs(this: list[stats.Count], last: list[stats.Count], labels: dict[Any, Any], prefix: str) -> list[Pair]:
    now = {c.key: c.n for c in this}
    before = {c.key: c.n for c in last}
    keys = [c.key for c in this] + [c.key for c in last if c.key not in now]
    return [
        Pair(f"{prefix}·{labels.get(k, k) if k is not None else '—'}", now.get(k, 0), before.get(k, 0)) for k in keys
    ]


def _rate(rows: list[stats.OnTime]) -> float | None:
    judged = sum(r.met + r.open_overdue for r in rows)
    return sum(r.on_time for r in rows) / judged if judged else None


def pairs_svg(rows: list[Pair], this_label: str, last_label: str) -> Markup:
    """Two bars per category (this week dark, last week light), labels escaped by ElementTree."""
    width, row_h, left, top = 360, 22, 130, 28
    height = top + max(len(rows), 1) * row_h + 8
    peak = max([max(r.this, r.last) for r in rows] + [1])
    svg = ElementTree.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "viewBox": f"0 0 {width} {height}",
            "class": "home-trend-chart",
            "role": "img",
            "font-family": FONT,
        },
    )
    ElementTree.SubElement(svg, "title").text = _("This week against last week")
    for i, (text, fill) in enumerate(((this_label, "#2c6fbb"), (last_label, "#a9c6e8"))):
        ElementTree.SubElement(
            svg, "rect", {"x": str(left + i * 110), "y": "6", "width": "10", "height": "10", "fill": fill}
        )
        ElementTree.SubElement(svg, "text", {"x": str(left + 14 + i * 110), "y": "15", "font-size": "11"}).text = text
    if not rows:
        ElementTree.SubElement(
            svg, "text", {"x": str(left), "y": str(top + 14), "font-size": "12", "fill": "#888"}
        ).text = _("No records in these two weeks.")
    plot = width - left - 30
    for i, row in enumerate(rows):
        y = top + i * row_h
        ElementTree.SubElement(
            svg, "text", {"x": str(left - 6), "y": str(y + 14), "font-size": "11", "text-anchor": "end"}
        ).text = row.label[:12]
        for j, (n, fill) in enumerate(((row.this, "#2c6fbb"), (row.last, "#a9c6e8"))):
            w = plot * n / peak
            ElementTree.SubElement(
                svg, "rect", {"x": str(left), "y": f"{y + 2 + j * 9}", "width": f"{w:.1f}", "height": "8", "fill": fill}
            )
            ElementTree.SubElement(
                svg, "text", {"x": f"{left + w + 3:.1f}", "y": f"{y + 9 + j * 9}", "font-size": "9"}
            ).text = str(n)
    return Markup(ElementTree.tostring(svg, encoding="unicode"))


def trend(now: datetime) -> Trend:
    """A fixed number of statements: two category counts and the on-time rows per week."""
    from models import complaint_rules
    from models.help_requests import CATEGORIES as HELP_CATEGORIES

    this_week = stats.week_of(stats.local_today(now))
    last_week = this_week.previous()
    rows = _pairs(
        stats.complaint_categories(this_week),
        stats.complaint_categories(last_week),
        complaint_rules.CATEGORIES,
        _("Complaint"),
    ) + _pairs(stats.help_counts(this_week), stats.help_counts(last_week), HELP_CATEGORIES, _("Help requests"))
    return Trend(
        rows,
        _rate(stats.on_time(this_week, now)),
        _rate(stats.on_time(last_week, now)),
        pairs_svg(rows, _("This week"), _("Last week")),
    )
