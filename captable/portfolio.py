"""The investor's portfolio: per offering and in total (per currency), what they put in, what
they got back (income vs return of capital), what their units are worth at NAV, the equity
multiple and the IRR (XIRR, display only) — `captable/returns.py` does the arithmetic.

Dated cash flows, from the investor's side, in the offering's time zone:
- contributions: the cost of units issued to them (subscriptions accepted at close, and
  reinvested payouts), and the cost carried in by a transfer they received (the buyer steps
  into the seller's shoes, as in the waterfall); units transferred away (or redeemed) count as
  capital returned at their carried cost on that day (a sale price is settled off the ledger);
- distributions: each paid payout's gross amount (withholding is tax paid on their behalf),
  split into income and return of capital, dated when paid;
- current value: units held now times NAV per unit as of today; before any NAV is posted, the
  offering's price per unit (the value basis says which).
Entries reversed (and the reversals) are left out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import Q
from django.utils import timezone

from captable.models import AccountKind, DistributionStatus, EntryKind, Payout, Posting
from captable.returns import FlowKind, InvestorCashFlow, InvestorReturns, investor_returns
from common.money import minor_units_to_decimal
from investors.models import Investor
from offerings.models import Offering
from offerings.nav import nav_as_of


@dataclass(frozen=True)
class OfferingPosition:
    offering: Offering
    quanta: int
    value_minor: int
    value_basis: str  # "nav" or "price"
    nav_per_unit_minor: int
    nav_date: date | None
    flows: tuple[InvestorCashFlow, ...]
    returns: InvestorReturns


@dataclass(frozen=True)
class CurrencyTotal:
    currency: str
    value_minor: int
    returns: InvestorReturns


@dataclass(frozen=True)
class Portfolio:
    investor_id: int
    as_of: date
    positions: list[OfferingPosition]
    totals: list[CurrencyTotal]


def _unit_flows(investor: Investor) -> dict[int, tuple[int, list[InvestorCashFlow]]]:
    """offering id → (quanta held now, contribution flows) from the investor's holding legs."""
    now = timezone.now()
    legs = (
        Posting.objects.filter(
            account__investor=investor, account__kind=AccountKind.HOLDING, effective_at__lte=now
        )
        .exclude(entry__kind=EntryKind.REVERSAL)
        .exclude(Q(entry__reversed_by__isnull=False))
        .order_by("effective_at", "id")
        .values_list(
            "account__offering_id",
            "account__offering__time_zone",
            "account__offering__currency",
            "effective_at",
            "amount",
            "cost_minor",
        )
    )
    held: dict[int, tuple[int, list[InvestorCashFlow]]] = {}
    for offering_id, zone, currency, effective_at, quanta, cost_minor in legs:
        total, flows = held.get(offering_id, (0, []))
        on = effective_at.astimezone(ZoneInfo(zone)).date()
        cost = minor_units_to_decimal(abs(cost_minor), currency)
        if cost_minor > 0:
            flows.append(InvestorCashFlow(on, cost, FlowKind.CONTRIBUTION))
        elif cost_minor < 0:  # carried cost out with units transferred or redeemed
            flows.append(InvestorCashFlow(on, cost, FlowKind.RETURN_OF_CAPITAL))
        held[offering_id] = (total + quanta, flows)
    return held


def _payout_flows(investor: Investor) -> dict[int, list[InvestorCashFlow]]:
    rows = (
        Payout.objects.filter(investor=investor, paid_at__isnull=False)
        .exclude(distribution__status=DistributionStatus.REVERSED)  # undone: never happened
        .order_by("paid_at", "id")
        .values_list(
            "distribution__offering_id",
            "distribution__offering__time_zone",
            "distribution__currency",
            "paid_at",
            "income_minor",
            "return_of_capital_minor",
        )
    )
    flows: dict[int, list[InvestorCashFlow]] = defaultdict(list)
    for offering_id, zone, currency, paid_at, income, capital in rows:
        assert paid_at is not None  # filtered above
        on = paid_at.astimezone(ZoneInfo(zone)).date()
        if income:
            amount = minor_units_to_decimal(income, currency)
            flows[offering_id].append(InvestorCashFlow(on, amount, FlowKind.INCOME))
        if capital:
            amount = minor_units_to_decimal(capital, currency)
            flows[offering_id].append(InvestorCashFlow(on, amount, FlowKind.RETURN_OF_CAPITAL))
    return flows


def _position(
    offering: Offering, quanta: int, flows: list[InvestorCashFlow], today: date
) -> OfferingPosition:
    nav = nav_as_of(offering_id=offering.pk, on=today)
    per_unit = nav.nav_per_unit_minor if nav else offering.price_per_unit_minor
    # Exact: NAV and price per unit split into whole minor units per quantum.
    value_minor = quanta * (per_unit // offering.quanta_per_unit)
    value = minor_units_to_decimal(value_minor, offering.currency)
    ordered = tuple(sorted(flows, key=lambda flow: flow.on))
    return OfferingPosition(
        offering=offering,
        quanta=quanta,
        value_minor=value_minor,
        value_basis="nav" if nav else "price",
        nav_per_unit_minor=per_unit,
        nav_date=nav.effective_date if nav else None,
        flows=ordered,
        returns=investor_returns(cash_flows=ordered, current_value=value, as_of=today),
    )


def portfolio_of(*, investor: Investor) -> Portfolio:
    """The investor's own portfolio as of today (the caller passes the signed-in investor)."""
    units = _unit_flows(investor)
    payouts = _payout_flows(investor)
    offerings = Offering.objects.in_bulk(set(units) | set(payouts))
    positions = []
    for offering_id in sorted(offerings):
        offering = offerings[offering_id]
        today = timezone.now().astimezone(ZoneInfo(offering.time_zone)).date()
        quanta, flows = units.get(offering_id, (0, []))
        positions.append(_position(offering, quanta, flows + payouts[offering_id], today))
    today = timezone.now().date()
    return Portfolio(investor.pk, today, positions, _totals(positions, today))


def _totals(positions: list[OfferingPosition], today: date) -> list[CurrencyTotal]:
    """Every offering in one currency as one investment: all the flows, all the value."""
    by_currency: dict[str, list[OfferingPosition]] = defaultdict(list)
    for position in positions:
        by_currency[position.offering.currency].append(position)
    totals = []
    for currency, group in sorted(by_currency.items()):
        value_minor = sum(position.value_minor for position in group)
        flows = sorted((f for p in group for f in p.flows), key=lambda flow: flow.on)
        value = minor_units_to_decimal(value_minor, currency)
        returns = investor_returns(cash_flows=flows, current_value=value, as_of=today)
        totals.append(CurrencyTotal(currency, value_minor, returns))
    return totals


def decimal_places(value: Decimal | None, places: int) -> str | None:
    """A ratio for display (multiple, IRR) at fixed places; None stays None."""
    if value is None:
        return None
    return str(value.quantize(Decimal(1).scaleb(-places)))
