"""Investor returns: pure functions over dated cash flows (no database).

Sign convention: from the investor's side, a contribution is negative and a distribution (or a
current value taken as if sold) is positive.

Two kinds of IRR live here, on purpose:

- `xirr` is the figure people read (portfolio, statements). It is Excel-compatible (actual/365
  from the first flow, the same as Excel's XIRR) and computed by pyxirr, which works in binary
  floating point: the float is turned into a Decimal through `str` and never enters a money path.
- `value_as_of`, `irr_reaches` and `irr_shortfall` are exact Decimal arithmetic for the
  waterfall's hurdles: instead of searching for the IRR, they compound every flow at the hurdle
  rate h to one date, (1 + h) ** (days / 365). For a conventional cash-flow set (money in first,
  money out after) the net value is decreasing in the rate, so "IRR >= h" is exactly "net value
  at h >= 0", and the shortfall is the amount still needed on that date to reach h. The powers
  are exact when the days are whole multiples of 365 and otherwise correctly rounded to 60
  significant digits (`DECIMAL_PRECISION`), some 40 digits below a cent.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext
from typing import TypeAlias

import pyxirr

DAYS_PER_YEAR = 365
# Enough digits that amounts up to 10**20 keep 40 fractional digits through a compounding factor.
DECIMAL_PRECISION = 60

CashFlow: TypeAlias = tuple[date, Decimal]


def _check_flows(cash_flows: Sequence[CashFlow]) -> None:
    for on, amount in cash_flows:
        if not isinstance(on, date):
            raise TypeError(f"cash-flow date must be a date, not {type(on).__name__}")
        if not isinstance(amount, Decimal) or not amount.is_finite():
            raise TypeError("cash-flow amounts must be finite Decimals; floats are not allowed")


def growth_factor(*, rate: Decimal, days: int) -> Decimal:
    """(1 + rate) ** (days / 365), exact when days is a multiple of 365 (integral power)."""
    if not isinstance(rate, Decimal) or rate <= -1:
        raise ValueError("rate must be a Decimal greater than -1")
    with localcontext() as context:
        context.prec = DECIMAL_PRECISION
        exponent = Decimal(days) / Decimal(DAYS_PER_YEAR)
        if exponent == exponent.to_integral_value():
            exponent = exponent.to_integral_value()
        return (Decimal(1) + rate) ** exponent


def value_as_of(cash_flows: Sequence[CashFlow], *, rate: Decimal, on: date) -> Decimal:
    """Net value of the flows carried to `on` at `rate` (later flows are discounted back)."""
    _check_flows(cash_flows)
    with localcontext() as context:
        context.prec = DECIMAL_PRECISION
        return sum(
            (
                amount * growth_factor(rate=rate, days=(on - flow_on).days)
                for flow_on, amount in cash_flows
            ),
            Decimal(0),
        )


def irr_reaches(cash_flows: Sequence[CashFlow], *, rate: Decimal) -> bool:
    """Exact hurdle test: does this (conventional) cash-flow set reach an IRR of at least `rate`?"""
    if not cash_flows:
        return False
    first_on = min(on for on, _ in cash_flows)
    return value_as_of(cash_flows, rate=rate, on=first_on) >= 0


def irr_shortfall(cash_flows: Sequence[CashFlow], *, rate: Decimal, on: date) -> Decimal:
    """What one more inflow on `on` must be for the flows to reach an IRR of exactly `rate`
    (zero when they already do)."""
    value = value_as_of(cash_flows, rate=rate, on=on)
    return value.copy_negate() if value < 0 else Decimal(0)  # copy_negate: no context rounding


def xirr(cash_flows: Sequence[CashFlow]) -> Decimal:
    """Excel-compatible XIRR for display. Raises ValueError when there is none (e.g. no
    outflow, or no inflow)."""
    _check_flows(cash_flows)
    if not any(amount < 0 for _, amount in cash_flows) or not any(
        amount > 0 for _, amount in cash_flows
    ):
        raise ValueError("XIRR needs at least one negative and one positive cash flow")
    dates = [on for on, _ in cash_flows]
    # Display path only: pyxirr computes in binary floating point.
    amounts = [float(amount) for _, amount in cash_flows]
    rate = pyxirr.xirr(dates, amounts, silent=True)
    if rate is None:
        raise ValueError("XIRR did not converge for these cash flows")
    return Decimal(str(rate))


def equity_multiple(*, contributed: Decimal, distributed: Decimal) -> Decimal | None:
    """Total distributed (plus current value, if the caller adds it) over total contributed;
    None before anything was contributed."""
    if contributed <= 0:
        return None
    with localcontext() as context:
        context.prec = DECIMAL_PRECISION
        return distributed / contributed


class FlowKind(enum.StrEnum):
    CONTRIBUTION = "contribution"  # includes reinvested (DRIP) payouts
    INCOME = "income"
    RETURN_OF_CAPITAL = "return_of_capital"


@dataclass(frozen=True)
class InvestorCashFlow:
    """One dated flow of an investor in one offering; `amount` is positive whatever the kind."""

    on: date
    amount: Decimal
    kind: FlowKind

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite():
            raise TypeError("amount must be a finite Decimal")
        if self.amount < 0:
            raise ValueError("amount must not be negative; the kind gives the direction")

    @property
    def signed_amount(self) -> Decimal:
        return -self.amount if self.kind == FlowKind.CONTRIBUTION else self.amount


@dataclass(frozen=True)
class InvestorReturns:
    contributed: Decimal
    distributed_income: Decimal
    distributed_return_of_capital: Decimal
    current_value: Decimal
    equity_multiple: Decimal | None  # (distributed + current value) / contributed
    irr: Decimal | None  # XIRR with the current value as a final inflow on the as-of date

    @property
    def distributed(self) -> Decimal:
        return self.distributed_income + self.distributed_return_of_capital


def investor_returns(
    *, cash_flows: Sequence[InvestorCashFlow], current_value: Decimal, as_of: date
) -> InvestorReturns:
    """Contributed, distributed (income vs return of capital), equity multiple and IRR."""
    flows = [flow for flow in cash_flows if flow.on <= as_of]

    def total(kind: FlowKind) -> Decimal:
        return sum((flow.amount for flow in flows if flow.kind == kind), Decimal(0))

    contributed = total(FlowKind.CONTRIBUTION)
    income = total(FlowKind.INCOME)
    return_of_capital = total(FlowKind.RETURN_OF_CAPITAL)
    dated: list[CashFlow] = [(flow.on, flow.signed_amount) for flow in flows]
    if current_value:
        dated.append((as_of, current_value))
    try:
        irr: Decimal | None = xirr(dated)
    except ValueError:
        irr = None
    return InvestorReturns(
        contributed=contributed,
        distributed_income=income,
        distributed_return_of_capital=return_of_capital,
        current_value=current_value,
        equity_multiple=equity_multiple(
            contributed=contributed, distributed=income + return_of_capital + current_value
        ),
        irr=irr,
    )
