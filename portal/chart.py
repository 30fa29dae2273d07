"""A small server-rendered SVG chart of an investor's money over time: after each dated flow,
what is still invested (contributions less distributions), and today's value as the last
point. Coordinates come from Decimal arithmetic; nothing is computed in the browser."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from captable.returns import FlowKind, InvestorCashFlow

WIDTH = 640
HEIGHT = 180
PADDING = 24


@dataclass(frozen=True)
class Chart:
    points: str  # the SVG polyline's "x,y x,y …"
    first_day: date
    last_day: date
    peak: Decimal
    value_today: Decimal
    dots: tuple[tuple[int, int], ...]


def _series(
    flows: tuple[InvestorCashFlow, ...], value: Decimal, today: date
) -> list[tuple[date, Decimal]]:
    series: list[tuple[date, Decimal]] = []
    invested = Decimal(0)
    for flow in sorted(flows, key=lambda item: item.on):
        invested += flow.amount if flow.kind == FlowKind.CONTRIBUTION else -flow.amount
        series.append((flow.on, invested))
    series.append((today, value))
    return series


def money_chart(
    flows: tuple[InvestorCashFlow, ...], *, value: Decimal, today: date
) -> Chart | None:
    if not flows:
        return None
    series = _series(flows, value, today)
    first, last = series[0][0], series[-1][0]
    span_days = max((last - first).days, 1)
    peak = max(max(amount for _, amount in series), Decimal(1))
    inner_width, inner_height = WIDTH - 2 * PADDING, HEIGHT - 2 * PADDING
    dots = tuple(
        (
            PADDING + int(Decimal(inner_width * (day - first).days) / span_days),
            HEIGHT - PADDING - int(inner_height * max(amount, Decimal(0)) / peak),
        )
        for day, amount in series
    )
    return Chart(
        points=" ".join(f"{x},{y}" for x, y in dots),
        first_day=first,
        last_day=last,
        peak=peak,
        value_today=value,
        dots=dots,
    )
