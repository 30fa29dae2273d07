"""Returns on the periodic statement, as of the period's end: per offering and per currency,
what the investor put in, got back and holds, the equity multiple and the IRR. The arithmetic
is `captable/returns.py`'s (`investor_returns`: the same as the dashboard's portfolio,
`captable/portfolio.py`), the chart `portal/chart.py`'s; this module only gathers the dated
flows as of a moment instead of as of now, from rows the statement has already read.

Flows follow the portfolio's rules, from the investor's side, dated in the offering's time zone:
- contributions: the cost of units acquired (issued, reinvested, received by transfer);
- capital returned: the carried cost of units transferred out or redeemed (a sale price is
  settled off the ledger);
- distributions: each payout's gross, split into income and return of capital (withholding is
  tax paid on the investor's behalf), dated when its ledger entry took effect.
As of the period's end means: postings and payouts effective up to the end of its last day; an
entry reversed by then is left out with its reversal, one reversed later still counts (the
reversal belongs to a later period), so the figures never change once the period is over.

Value: units held at the end times the NAV per unit in force on the last day (the latest
effective date on or before it), else the offering's price per unit.

IRR is shown once the first flow is a year old at the period's end, as on the dashboard: an
annualised rate over a few weeks says nothing useful.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from captable.models import AccountKind, EntryKind
from captable.returns import FlowKind, InvestorCashFlow, investor_returns
from common.money import decimal_to_minor_units, minor_units_to_decimal
from offerings.models import Offering
from offerings.nav import nav_as_of
from portal.chart import Chart, money_chart
from reports.selectors import PaidPayoutRow, PostingRow

# The dashboard's rule (portal/views_dashboard.py); a test keeps the two equal.
IRR_SHOWN_AFTER_DAYS = 365


class IrrUnavailable(enum.StrEnum):
    NONE = ""
    NOTHING_INVESTED = "nothing_invested"
    UNDER_A_YEAR = "under_a_year"
    NOT_COMPUTABLE = "not_computable"


@dataclass(frozen=True)
class Valuation:
    basis: str  # "nav" or "price"
    per_unit_minor: int
    nav_date: date | None
    nav_id: int | None


@dataclass(frozen=True)
class Returns:
    currency: str
    as_of: date
    first_flow_on: date | None
    contributed_minor: int
    income_minor: int
    return_of_capital_minor: int  # paid out by distributions
    capital_out_minor: int  # carried cost of units transferred out or redeemed
    value_minor: int
    equity_multiple: Decimal | None  # None: nothing invested
    irr: Decimal | None  # None: not shown, `irr_unavailable` says why
    irr_unavailable: IrrUnavailable
    chart: Chart | None

    @property
    def distributed_minor(self) -> int:
        return self.income_minor + self.return_of_capital_minor


def day_in(instant: datetime, time_zone: str) -> date:
    return instant.astimezone(ZoneInfo(time_zone)).date()


def reversed_entry_ids(rows: Iterable[PostingRow]) -> frozenset[int]:
    """Entries reversed by a reversal among `rows` (rows already cut at the moment)."""
    return frozenset(
        row.reverses_id
        for row in rows
        if row.entry_kind == EntryKind.REVERSAL and row.reverses_id is not None
    )


def unit_flows(
    rows: Sequence[PostingRow], *, closing: datetime, time_zone: str, currency: str
) -> list[InvestorCashFlow]:
    """Contributions and capital returned from the holding legs effective up to `closing`."""
    upto = [row for row in rows if row.effective_at <= closing]
    undone = reversed_entry_ids(upto)
    flows = []
    for row in upto:
        if row.account_kind != AccountKind.HOLDING or row.cost_minor == 0:
            continue
        if row.entry_kind == EntryKind.REVERSAL or row.entry_id in undone:
            continue
        kind = FlowKind.CONTRIBUTION if row.cost_minor > 0 else FlowKind.RETURN_OF_CAPITAL
        amount = minor_units_to_decimal(abs(row.cost_minor), currency)
        flows.append(InvestorCashFlow(day_in(row.effective_at, time_zone), amount, kind))
    return flows


def payout_counts(payout: PaidPayoutRow, closing: datetime) -> bool:
    """Paid by `closing` and not undone by then."""
    undone = payout.reversed_at is not None and payout.reversed_at <= closing
    return payout.paid_at <= closing and not undone


def payout_flows(
    payouts: Sequence[PaidPayoutRow], *, closing: datetime, time_zone: str, currency: str
) -> list[InvestorCashFlow]:
    flows = []
    for payout in payouts:
        if not payout_counts(payout, closing):
            continue
        on = day_in(payout.paid_at, time_zone)
        for amount_minor, kind in (
            (payout.income_minor, FlowKind.INCOME),
            (payout.return_of_capital_minor, FlowKind.RETURN_OF_CAPITAL),
        ):
            if amount_minor:
                amount = minor_units_to_decimal(amount_minor, currency)
                flows.append(InvestorCashFlow(on, amount, kind))
    return flows


def valuation_on(offering: Offering, day: date) -> Valuation:
    nav = nav_as_of(offering_id=offering.pk, on=day)
    if nav is None:
        return Valuation("price", offering.price_per_unit_minor, None, None)
    return Valuation("nav", nav.nav_per_unit_minor, nav.effective_date, nav.pk)


def value_minor(quanta: int, valuation: Valuation, quanta_per_unit: int) -> int:
    # Exact, as in the portfolio: NAV and price per unit split into whole minor units a quantum.
    return quanta * (valuation.per_unit_minor // quanta_per_unit)


def _total_minor(flows: Iterable[InvestorCashFlow], kind: FlowKind, currency: str) -> int:
    total = sum((flow.amount for flow in flows if flow.kind == kind), Decimal(0))
    return decimal_to_minor_units(total, currency)


def returns_as_of(
    *,
    units: Sequence[InvestorCashFlow],
    payouts: Sequence[InvestorCashFlow],
    value_minor: int,
    currency: str,
    as_of: date,
    with_chart: bool = True,
) -> Returns:
    """Totals, equity multiple and IRR of the flows up to `as_of` with the value on that day."""
    flows = tuple(sorted([*units, *payouts], key=lambda flow: flow.on))
    value = minor_units_to_decimal(value_minor, currency)
    computed = investor_returns(cash_flows=flows, current_value=value, as_of=as_of)
    contributed_minor = _total_minor(units, FlowKind.CONTRIBUTION, currency)
    assert computed.contributed == minor_units_to_decimal(contributed_minor, currency)
    first_flow_on = flows[0].on if flows else None
    unavailable = _irr_unavailable(contributed_minor, first_flow_on, as_of, computed.irr)
    return Returns(
        currency=currency,
        as_of=as_of,
        first_flow_on=first_flow_on,
        contributed_minor=contributed_minor,
        income_minor=_total_minor(payouts, FlowKind.INCOME, currency),
        return_of_capital_minor=_total_minor(payouts, FlowKind.RETURN_OF_CAPITAL, currency),
        capital_out_minor=_total_minor(units, FlowKind.RETURN_OF_CAPITAL, currency),
        value_minor=value_minor,
        equity_multiple=computed.equity_multiple,
        irr=computed.irr if unavailable == IrrUnavailable.NONE else None,
        irr_unavailable=unavailable,
        chart=money_chart(flows, value=value, today=as_of) if with_chart else None,
    )


def _irr_unavailable(
    contributed_minor: int, first_flow_on: date | None, as_of: date, irr: Decimal | None
) -> IrrUnavailable:
    if contributed_minor <= 0 or first_flow_on is None:
        return IrrUnavailable.NOTHING_INVESTED
    if (as_of - first_flow_on).days < IRR_SHOWN_AFTER_DAYS:
        return IrrUnavailable.UNDER_A_YEAR
    if irr is None:
        return IrrUnavailable.NOT_COMPUTABLE
    return IrrUnavailable.NONE
