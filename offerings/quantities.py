"""Units ↔ quanta, exactly. Every quantity is stored in quanta; units exist at the edges.

An offering declares `quanta_per_unit` (10**k, 0 <= k <= 6); one unit = that many quanta.
Decimal is used only to parse and print; nothing here rounds.
"""

from __future__ import annotations

from decimal import Decimal

from common.errors import ValidationFailed
from offerings.models import QUANTA_PER_UNIT_ALLOWED


def quanta_exponent(quanta_per_unit: int) -> int:
    """Digits after the decimal point in a unit amount (1000 quanta per unit → 3)."""
    if quanta_per_unit not in QUANTA_PER_UNIT_ALLOWED:
        raise ValidationFailed(
            f"quanta_per_unit must be one of {', '.join(map(str, QUANTA_PER_UNIT_ALLOWED))}.",
            code="quanta_per_unit_invalid",
            field="quanta_per_unit",
        )
    return len(str(quanta_per_unit)) - 1


def units_to_quanta(units: Decimal, *, quanta_per_unit: int, field: str) -> int:
    """Exact: refuses amounts finer than one quantum instead of rounding them away."""
    if not isinstance(units, Decimal):
        raise TypeError(f"units must be a Decimal, not {type(units).__name__}")
    if not units.is_finite():
        raise ValidationFailed(
            f"{field} must be a finite number.", code="units_invalid", field=field
        )
    scaled = units.scaleb(quanta_exponent(quanta_per_unit))
    integral = scaled.to_integral_value()
    if integral != scaled:
        raise ValidationFailed(
            f"{field} {units} is finer than one quantum (1/{quanta_per_unit} of a unit).",
            code="units_precision",
            field=field,
        )
    return int(integral)


def quanta_to_units(quanta: int, *, quanta_per_unit: int) -> Decimal:
    return Decimal(quanta).scaleb(-quanta_exponent(quanta_per_unit))


def format_units(quanta: int, quanta_per_unit: int) -> str:
    """Plain decimal string for the API, with as many places as a quantum has: '12.500'."""
    return f"{quanta_to_units(quanta, quanta_per_unit=quanta_per_unit):f}"


def cost_of_quanta_minor(quanta: int, *, price_per_unit_minor: int, quanta_per_unit: int) -> int:
    """Exact cost in minor units: one quantum costs a whole number of cents (a DB invariant)."""
    cost, remainder = divmod(quanta * price_per_unit_minor, quanta_per_unit)
    assert remainder == 0, "price_per_unit_minor must be a multiple of quanta_per_unit"
    return cost
