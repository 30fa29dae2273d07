"""The demo's distribution step (`make demo` calls `demo_distributions` once the journey's
offering has closed funded): a pro-rata income distribution a quarter later and a waterfall
distribution from the sale a year later (for 1.5 times the raise), each declared by the
sponsor, approved by a second person, funded and paid through the services, then each
investor's payouts by tier and IRR.

Paying needs the record date to have passed, and the holders of record only exist from the
close (today), so the demo moves the clock forward — time-machine, a development dependency —
and everything is posted at those later dates exactly as it would be then. Re-runnable: when the
offering already has its demo distributions, they are only printed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils import timezone

from captable.distribution_reinvestment import issued_cost_minor
from captable.distribution_waterfall import PromoteTierTerms, waterfall_terms_set
from captable.distributions import (
    distribution_approve,
    distribution_declare,
    distribution_fund,
    distribution_pay,
    distribution_pay_run,
)
from captable.models import Distribution, Payout, WaterfallTerms
from captable.portfolio import portfolio_of
from captable.returns import investor_returns
from common.models import User
from common.money import decimal_to_minor_units, money_display
from offerings.models import Offering, OfferingStatus

MEMO_INCOME = "Demo: first quarter's rent"
MEMO_SALE = "Demo: sale of the property"
INCOME_AFTER_DAYS = 91
SALE_AFTER_DAYS = 366

Write = Callable[[str], object]


@contextmanager
def _on(day: date, time_zone: str) -> Iterator[None]:
    """The clock at noon on `day` in the offering's time zone."""
    import time_machine  # development dependency: only the demo moves the clock

    moment = datetime.combine(day, time(12), tzinfo=ZoneInfo(time_zone))
    with time_machine.travel(moment, tick=False):
        yield


def _distribute(
    offering: Offering,
    *,
    people: tuple[User, User, User],
    amount_minor: int,
    paid_on: date,
    memo: str,
    method: str,
) -> None:
    sponsor, staff, approver = people
    with _on(paid_on - timedelta(days=10), offering.time_zone):
        declared = distribution_declare(
            actor=sponsor,
            offering_id=offering.pk,
            amount_minor=amount_minor,
            currency=offering.currency,
            kind="income" if method == "pro_rata" else "mixed",
            method=method,
            record_date=paid_on - timedelta(days=1),
            payment_date=paid_on,
            memo=memo,
        )
        distribution_approve(actor=approver, distribution_id=declared.pk)
        distribution_fund(actor=sponsor, distribution_id=declared.pk)
    with _on(paid_on, offering.time_zone):
        distribution_pay(actor=staff, distribution_id=declared.pk)
        distribution_pay_run(distribution_id=declared.pk)  # the task does this; safe twice


def _run(offering: Offering, people: tuple[User, User, User], closed_on: date) -> None:
    sponsor = people[0]
    if not WaterfallTerms.objects.filter(offering=offering).exists():
        waterfall_terms_set(
            actor=sponsor,
            offering_id=offering.pk,
            preferred_return_rate=Decimal("0.08"),
            catch_up_sponsor_share=Decimal(1),
            sponsor_profit_target=Decimal("0.20"),
            promote_tiers=[PromoteTierTerms(sponsor_share=Decimal("0.20"))],
        )
    income_on = closed_on + timedelta(days=INCOME_AFTER_DAYS)
    raised_minor = issued_cost_minor(offering)
    _distribute(
        offering,
        people=people,
        amount_minor=raised_minor * 2 // 100,  # 2% of the raise: a quarter's rent
        paid_on=income_on,
        memo=MEMO_INCOME,
        method="pro_rata",
    )
    sale_on = closed_on + timedelta(days=SALE_AFTER_DAYS)
    _distribute(
        offering,
        people=people,
        amount_minor=raised_minor * 3 // 2,  # sold for 1.5x what was raised
        paid_on=sale_on,
        memo=MEMO_SALE,
        method="waterfall",
    )


def demo_distributions(
    *, offering: Offering | None, sponsor: User, staff: User, approver: User, write: Write
) -> None:
    """Pay the demo's two distributions once (if the offering closed funded), then print them."""
    if offering is None or offering.status != OfferingStatus.CLOSED_FUNDED:
        write(f"\nDistributions: skipped, the offering is {offering and offering.status}.")
        return
    existing = Distribution.objects.filter(offering=offering, memo__in=(MEMO_INCOME, MEMO_SALE))
    if not existing.exists():
        closed_at = offering.status_changes.order_by("-created_at").first()
        moment = closed_at.created_at if closed_at else timezone.now()
        closed_on = moment.astimezone(ZoneInfo(offering.time_zone)).date()
        _run(offering, (sponsor, staff, approver), closed_on)
    _print(offering, write)


def _print(offering: Offering, write: Write) -> None:
    currency = offering.currency
    distributions = Distribution.objects.filter(
        offering=offering, memo__in=(MEMO_INCOME, MEMO_SALE)
    ).order_by("record_date")
    for distribution in distributions:
        write(
            f"\nDistribution #{distribution.pk} — {distribution.memo}: "
            f"{money_display(distribution.amount_minor, currency)}, {distribution.method}, "
            f"record date {distribution.record_date}, paid {distribution.payment_date} "
            f"({distribution.status})"
        )
        payouts = Payout.objects.filter(distribution=distribution).select_related("investor")
        for payout in payouts.order_by("investor_id"):
            write(
                f"  {payout.investor.legal_name}: gross "
                f"{money_display(payout.gross_minor, currency)} (income "
                f"{money_display(payout.income_minor, currency)}, return of capital "
                f"{money_display(payout.return_of_capital_minor, currency)}), withheld "
                f"{money_display(payout.withholding_minor, currency)}, net "
                f"{money_display(payout.net_minor, currency)}"
            )
            for tier in payout.tiers:
                if tier["investor_minor"] or tier["sponsor_minor"]:
                    label = tier["tier"].replace("_", " ")
                    write(
                        f"      {label:<18} investor "
                        f"{money_display(tier['investor_minor'], currency):>12}   sponsor "
                        f"{money_display(tier['sponsor_minor'], currency):>12}"
                    )
    _print_returns(offering, distributions.last(), write)


def _print_returns(offering: Offering, last: Distribution | None, write: Write) -> None:
    """Realized returns: after the sale the units are worth nothing more, so the IRR is over
    the cash flows alone (no current value)."""
    if last is None:
        return
    currency = offering.currency
    write(f"\nRealized returns on {offering.title} (as of {last.payment_date})")
    holders = Payout.objects.filter(distribution=last).select_related("investor")
    with _on(last.payment_date, offering.time_zone):
        for payout in holders.order_by("investor_id"):
            position = next(
                p
                for p in portfolio_of(investor=payout.investor).positions
                if p.offering == offering
            )
            returns = investor_returns(
                cash_flows=position.flows, current_value=Decimal(0), as_of=last.payment_date
            )
            multiple = f"{returns.equity_multiple:.2f}x" if returns.equity_multiple else "n/a"
            irr = f"{returns.irr * 100:.2f}%" if returns.irr is not None else "n/a"
            contributed = decimal_to_minor_units(returns.contributed, currency)
            distributed = decimal_to_minor_units(returns.distributed, currency)
            write(
                f"  {payout.investor.legal_name}: contributed "
                f"{money_display(contributed, currency)}, distributed "
                f"{money_display(distributed, currency)}, equity multiple {multiple}, IRR {irr}"
            )
