"""Money at the edges, integers inside.

The ledger stores integers in the smallest unit (cents, or quanta for units). `Money`
(py-moneyed, Decimal) exists only at the API and report edges. Two functions here are the
only places the project rounds or splits an amount:

- `round_minor_units`: the one rounding function (half to even, "banker's rounding"), from an
  exact quantity of minor units (Decimal or Fraction) to an int;
- `allocate`: the one allocation function (floor, then largest remainder, ties to the
  earlier weight), which keeps every split summing exactly to its total.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from fractions import Fraction
from functools import cache

from babel.numbers import format_currency
from moneyed import Money, get_currency
from moneyed.classes import CurrencyDoesNotExist

from common.errors import ValidationFailed

SUPPORTED_CURRENCIES = ("USD", "EUR")
ROUNDING_MODE = ROUND_HALF_EVEN
BASIS_POINTS_PER_UNIT = 10_000


@cache
def currency_exponent(currency: str) -> int:
    """Digits after the decimal point in the currency's minor unit (USD: 2, JPY: 0)."""
    try:
        sub_unit = get_currency(currency).sub_unit
    except CurrencyDoesNotExist:
        raise ValidationFailed(f"Unknown currency {currency!r}.", code="unknown_currency") from None
    exponent = len(str(sub_unit)) - 1
    assert 10**exponent == sub_unit, f"non-decimal minor unit for {currency}"
    return exponent


def check_supported_currency(currency: str) -> str:
    if currency not in SUPPORTED_CURRENCIES:
        raise ValidationFailed(
            f"Currency {currency!r} is not supported; "
            f"use one of {', '.join(SUPPORTED_CURRENCIES)}.",
            code="unsupported_currency",
        )
    return currency


def decimal_to_minor_units(amount: Decimal, currency: str) -> int:
    """Exact conversion; refuses sub-cent amounts rather than rounding them away silently."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"amount must be a Decimal, not {type(amount).__name__}")
    if not amount.is_finite():
        raise ValidationFailed("Amount must be a finite number.", code="invalid_amount")
    scaled = amount.scaleb(currency_exponent(currency))
    try:
        integral = scaled.to_integral_value()
    except InvalidOperation:  # pragma: no cover - only for absurd exponents
        raise ValidationFailed("Amount is out of range.", code="invalid_amount") from None
    if integral != scaled:
        raise ValidationFailed(
            f"{amount} {currency} has more decimal places than {currency} allows.",
            code="invalid_amount",
        )
    return int(integral)


def money_to_minor_units(money: Money) -> int:
    return decimal_to_minor_units(money.amount, money.currency.code)


def minor_units_to_decimal(amount_minor: int, currency: str) -> Decimal:
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
        raise TypeError(f"minor units must be an int, not {type(amount_minor).__name__}")
    return Decimal(amount_minor).scaleb(-currency_exponent(currency))


def minor_units_to_money(amount_minor: int, currency: str) -> Money:
    return Money(minor_units_to_decimal(amount_minor, currency), currency)


def format_minor_units(amount_minor: int, currency: str) -> str:
    """Plain string for the API: '1000.00' (never exponent notation)."""
    return f"{minor_units_to_decimal(amount_minor, currency):f}"


def round_minor_units(value: Decimal | Fraction | int) -> int:
    """THE rounding function: an exact amount of minor units → int, half to even."""
    if isinstance(value, bool):
        raise TypeError("bool is not an amount")
    if isinstance(value, int):
        return value
    if isinstance(value, Fraction):
        floor, remainder = divmod(value.numerator, value.denominator)
        twice = 2 * remainder
        if twice > value.denominator or (twice == value.denominator and floor % 2 == 1):
            return floor + 1
        return floor
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValidationFailed("Amount must be a finite number.", code="invalid_amount")
        return int(value.to_integral_value(rounding=ROUNDING_MODE))
    raise TypeError(f"cannot round {type(value).__name__}; floats are not allowed for money")


def basis_points_of(amount_minor: int, basis_points: int) -> int:
    """A fee or rate in basis points of an amount, rounded once by `round_minor_units`."""
    return round_minor_units(Fraction(amount_minor * basis_points, BASIS_POINTS_PER_UNIT))


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` over `weights` exactly: floor each share, then hand out the leftover
    units one each by largest remainder; equal remainders go to the earlier weight, so the
    caller's ordering (e.g. by investor id) is the deterministic tie-break.

    Guarantees: the shares sum to `total`; each share is within one unit of its exact value
    total * weight / sum(weights); the same input always gives the same output.
    """
    if isinstance(total, bool) or not isinstance(total, int):
        raise TypeError("total must be an int")
    if total < 0:
        raise ValueError("total must not be negative")
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in weights):
        raise ValueError("weights must be non-negative ints")
    weight_sum = sum(weights)
    if weight_sum == 0:
        if total == 0:
            return [0] * len(weights)
        raise ValueError("cannot allocate a non-zero total over zero weights")
    if len(weights) >= ALLOCATE_VECTOR_MIN and total * max(weights) <= INT64_MAX:
        shares = _allocate_int64(total, weights, weight_sum)
    else:
        shares = _allocate_ints(total, weights, weight_sum)
    assert sum(shares) == total
    return shares


# From this many weights `allocate` computes in numpy's int64 (a pay run to 100,000 holders:
# ~10 ms instead of ~200 ms), when every product total * weight fits in it (then every
# quotient, remainder and sum does too): the same integers, floor and largest remainder with
# the same ties, so the same result (tested against `_allocate_ints`).
ALLOCATE_VECTOR_MIN = 1_000
INT64_MAX = 2**63 - 1


def _allocate_ints(total: int, weights: Sequence[int], weight_sum: int) -> list[int]:
    shares: list[int] = []
    remainders: list[int] = []
    for weight in weights:
        share, remainder = divmod(total * weight, weight_sum)
        shares.append(share)
        remainders.append(remainder)
    leftover = total - sum(shares)
    # leftover < number of non-zero remainders, so each index gets at most one extra unit.
    by_largest_remainder = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for index in by_largest_remainder[:leftover]:
        shares[index] += 1
    return shares


def _allocate_int64(total: int, weights: Sequence[int], weight_sum: int) -> list[int]:
    """`_allocate_ints` in numpy, for total * max(weights) <= INT64_MAX (the caller checks)."""
    import numpy as np  # only here: most processes never split over many weights

    products = np.asarray(weights, dtype=np.int64) * np.int64(total)
    shares, remainders = np.divmod(products, np.int64(weight_sum))
    leftover = total - int(shares.sum())
    # A stable sort on the negated remainder: largest first, equal ones by index (the order
    # of sorted(key=(-remainder, index))).
    by_largest_remainder = np.argsort(-remainders, kind="stable")
    shares[by_largest_remainder[:leftover]] += 1
    return [int(share) for share in shares.tolist()]


def money_display(amount_minor: int, currency: str, *, locale: str = "en_US") -> str:
    """Human formatting for people (demo, statements): '$4,000,000.00', '3.000,00 €'.
    Exact: babel formats the Decimal, never a float."""
    return format_currency(minor_units_to_decimal(amount_minor, currency), currency, locale=locale)
