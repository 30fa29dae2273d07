"""HTTP for the investor's own portfolio. Mounted under the distributions router.

No `from __future__ import annotations` here: ninja reads the annotations at import time.
"""

from datetime import date
from decimal import Decimal

from django.http import HttpRequest
from ninja import Router
from pydantic import BaseModel, Field

from captable.api import actor_of
from captable.portfolio import CurrencyTotal, OfferingPosition, decimal_places, portfolio_of
from captable.returns import InvestorReturns
from captable.schemas import READ_ERRORS
from common.money import decimal_to_minor_units
from common.schemas import MoneyOut
from investors.selectors import investor_of_user
from offerings.quantities import format_units

portfolio_router = Router(tags=["portfolio"])


class ReturnsOut(BaseModel):
    contributed: MoneyOut
    distributed_income: MoneyOut
    distributed_return_of_capital: MoneyOut
    current_value: MoneyOut
    equity_multiple: str | None = Field(
        description="(distributed + current value) / contributed, 4 places; null before any "
        "contribution."
    )
    irr: str | None = Field(
        description="XIRR (Excel-compatible, annual) with the current value as a final inflow "
        "today, 6 places; null when there is none yet."
    )

    @classmethod
    def of(cls, returns: InvestorReturns, currency: str) -> "ReturnsOut":
        def money(amount: Decimal) -> MoneyOut:
            # Sums of whole minor units: the conversion is exact (it refuses anything else).
            return MoneyOut.of_minor_units(decimal_to_minor_units(amount, currency), currency)

        return cls(
            contributed=money(returns.contributed),
            distributed_income=money(returns.distributed_income),
            distributed_return_of_capital=money(returns.distributed_return_of_capital),
            current_value=money(returns.current_value),
            equity_multiple=decimal_places(returns.equity_multiple, 4),
            irr=decimal_places(returns.irr, 6),
        )


class PositionOut(BaseModel):
    offering_id: int
    title: str
    units: str = Field(description="Units held now.")
    quanta: int
    value_basis: str = Field(description="nav, or price before any NAV is posted.")
    value_per_unit: MoneyOut
    nav_date: date | None
    returns: ReturnsOut

    @classmethod
    def of(cls, position: OfferingPosition) -> "PositionOut":
        offering = position.offering
        return cls(
            offering_id=offering.pk,
            title=offering.title,
            units=format_units(position.quanta, offering.quanta_per_unit),
            quanta=position.quanta,
            value_basis=position.value_basis,
            value_per_unit=MoneyOut.of_minor_units(position.nav_per_unit_minor, offering.currency),
            nav_date=position.nav_date,
            returns=ReturnsOut.of(position.returns, offering.currency),
        )


class TotalOut(BaseModel):
    currency: str
    returns: ReturnsOut

    @classmethod
    def of(cls, total: CurrencyTotal) -> "TotalOut":
        return cls(currency=total.currency, returns=ReturnsOut.of(total.returns, total.currency))


class PortfolioOut(BaseModel):
    investor_id: int
    as_of: date
    offerings: list[PositionOut]
    totals: list[TotalOut] = Field(description="Every offering in one currency together.")


@portfolio_router.get("/portfolio", response={200: PortfolioOut, **READ_ERRORS})
def portfolio(request: HttpRequest) -> PortfolioOut:
    """Your own portfolio: per offering and in total, contributed, distributed (income vs
    return of capital), value at NAV, equity multiple and IRR."""
    investor = investor_of_user(user=actor_of(request))
    built = portfolio_of(investor=investor)
    return PortfolioOut(
        investor_id=built.investor_id,
        as_of=built.as_of,
        offerings=[PositionOut.of(position) for position in built.positions],
        totals=[TotalOut.of(total) for total in built.totals],
    )
