"""Display filters: money from minor units and units from quanta, never through a float."""

from __future__ import annotations

from decimal import Decimal

from django import template

from common.money import decimal_to_minor_units
from offerings.quantities import quanta_to_units
from portal.formatting import money_text

register = template.Library()


@register.filter
def money(amount_minor: int | None, currency: str) -> str:
    """`{{ offering.price_per_unit_minor|money:offering.currency }}` → '$100.00'."""
    if amount_minor is None:
        return "—"
    return money_text(int(amount_minor), currency)


@register.filter
def units(quanta: int | None, quanta_per_unit: int) -> str:
    """`{{ subscription.quanta|units:offering.quanta_per_unit }}` → '12.5' (thousands grouped)."""
    if quanta is None:
        return "—"
    value = quanta_to_units(int(quanta), quanta_per_unit=int(quanta_per_unit)).normalize()
    return f"{value:,f}"


@register.filter
def percent_bps(basis_points: int | None) -> str:
    """Basis points as a percentage: 1450 → '14.50%'."""
    if basis_points is None:
        return "—"
    sign = "-" if basis_points < 0 else ""
    whole, rest = divmod(abs(int(basis_points)), 100)
    return f"{sign}{whole}.{rest:02d}%"


@register.filter
def multiple_bps(basis_points: int | None) -> str:
    """An equity multiple in basis points of one times: 18500 → '1.85' and the times sign."""
    if basis_points is None:
        return "—"
    whole, rest = divmod(int(basis_points), 10_000)
    return f"{whole}.{rest // 100:02d}\u00d7"


@register.filter
def decimal_money(amount: Decimal | None, currency: str) -> str:
    """An exact Decimal amount (the portfolio's figures) → '$1,000.00'."""
    if amount is None:
        return "—"
    return money_text(decimal_to_minor_units(amount, currency), currency)
