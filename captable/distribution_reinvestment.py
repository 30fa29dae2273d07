"""Reinvestment of distributions (DRIP).

An investor opts in per offering (`reinvestment_elect`). When a payout of theirs is paid, its
net buys units of the offering that the issuer newly authorizes, at the NAV per unit in force on
the payment day (offerings/nav.py), in whole quanta; the rest of the net stays in cash. The
purchase goes through the same checks as a subscription — KYC, the per-investor maximum, and
the exemption's rule pack — by calling `captable/subscriptions.py`, and it may not take the
offering past its maximum raise. Any refusal (or no NAV yet) pays the whole net in cash and
says why on the payout. The units are issued at their cost, so the waterfall and the IRR count
them as a contribution on the payment day.

Ledger (in the payout's transaction, deterministic keys, so a repeated run buys once):
authorized → treasury (`distribution:{id}:drip:{investor}:authorize`), treasury → holding
with its cost (`…:issue`), and the cost from the investor's available cash to the issuer's
operating account (`…:cash`). The offering's authorized and issued counters grow by the same
quanta.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from captable import ledger
from captable.models import (
    Account,
    AccountKind,
    Distribution,
    EntryKind,
    Payout,
    Posting,
    ReinvestmentElection,
    units_asset,
)
from captable.selectors import positions_as_of
from captable.subscriptions import subscription_investor_checks
from common.errors import DomainError, LimitExceeded, NotAllowed, NotFound
from common.models import User
from common.money import format_minor_units
from investors.models import Investor
from investors.selectors import investor_of_user
from offerings.models import Offering, OfferingStatus
from offerings.nav import nav_as_of


def reinvestment_elect(*, actor: User, offering_id: int, is_enabled: bool) -> ReinvestmentElection:
    """The investor turns reinvestment of their distributions from an offering on or off."""
    investor = investor_of_user(user=actor)
    # The investor's offerings: those they hold (or held) units of; any other is not found.
    offering = Offering.objects.filter(
        pk=offering_id,
        pk__in=Account.objects.filter(investor=investor, kind=AccountKind.HOLDING).values(
            "offering_id"
        ),
    ).first()
    if offering is None:
        raise NotFound(f"Offering {offering_id} not found.", code="offering_not_found")
    if offering.status != OfferingStatus.CLOSED_FUNDED:
        raise NotAllowed(
            "Reinvestment is chosen for an offering that has closed funded.",
            code="offering_not_closed_funded",
        )
    with transaction.atomic():
        election, _ = ReinvestmentElection.objects.update_or_create(
            investor=investor, offering=offering, defaults={"is_enabled": is_enabled}
        )
    return election


def is_reinvesting(*, investor_id: int, offering_id: int) -> bool:
    return ReinvestmentElection.objects.filter(
        investor_id=investor_id, offering_id=offering_id, is_enabled=True
    ).exists()


@dataclass(frozen=True)
class Purchase:
    quanta: int
    cost_minor: int


def _purchase(payout: Payout, offering: Offering) -> Purchase:
    """What the net buys at today's NAV in whole quanta; a DomainError says why not."""
    today = timezone.now().astimezone(ZoneInfo(offering.time_zone)).date()
    nav = nav_as_of(offering_id=offering.pk, on=today)
    if nav is None:
        raise LimitExceeded("No NAV is posted yet to buy units at.", code="nav_missing")
    price_per_quantum = nav.nav_per_unit_minor // offering.quanta_per_unit
    quanta = payout.net_minor // price_per_quantum
    if quanta == 0:
        raise LimitExceeded(
            f"The net payout is less than one quantum at NAV "
            f"({format_minor_units(price_per_quantum, offering.currency)}).",
            code="below_one_quantum",
        )
    return Purchase(quanta, quanta * price_per_quantum)


def issued_cost_minor(offering: Offering) -> int:
    """What the offering's issued units cost their investors (subscriptions, reinvestments)."""
    total = Posting.objects.filter(
        asset=units_asset(offering.pk),
        account__kind=AccountKind.HOLDING,
        entry__kind=EntryKind.ISSUE,
    ).aggregate(total=Sum("cost_minor"))["total"]
    return int(total or 0)


def _check(investor: Investor, offering: Offering, purchase: Purchase) -> None:
    """The subscription checks (called, not copied), and the offering's maximum raise."""
    held = next(
        (p for p in positions_as_of(investor=investor) if p.offering_id == offering.pk), None
    )
    subscription_investor_checks(
        investor=investor,
        offering=offering,
        quanta=purchase.quanta,
        amount_minor=purchase.cost_minor,
        held_quanta=held.quanta if held else 0,
        held_amount_minor=held.cost_minor if held else 0,
        now=timezone.now(),
    )
    if issued_cost_minor(offering) + purchase.cost_minor > offering.max_raise_minor:
        raise LimitExceeded(
            "Reinvesting would take the offering past its maximum raise.",
            code="offering_max_raise_reached",
        )


def _post(payout: Payout, distribution: Distribution, purchase: Purchase) -> None:
    offering, investor = distribution.offering, payout.investor
    prefix = f"distribution:{distribution.pk}:drip:{investor.pk}"
    ledger.units_authorize(
        offering=offering, quanta=purchase.quanta, idempotency_key=f"{prefix}:authorize"
    )
    ledger.units_issue(
        offering=offering,
        investor=investor,
        quanta=purchase.quanta,
        cost_minor=purchase.cost_minor,
        idempotency_key=f"{prefix}:issue",
        memo=f"Distribution #{distribution.pk}: reinvested at NAV",
    )
    ledger.cash_move(
        source=ledger.cash_spec(investor, distribution.currency),
        destination=ledger.issuer_spec(offering.issuer, AccountKind.OPERATING, offering.currency),
        amount_minor=purchase.cost_minor,
        idempotency_key=f"{prefix}:cash",
        memo=f"Distribution #{distribution.pk}: reinvestment paid for units",
        metadata={"distribution_id": distribution.pk, "payout_id": payout.pk},
    )
    Offering.objects.filter(pk=offering.pk).update(
        units_authorized_quanta=F("units_authorized_quanta") + purchase.quanta,
        units_issued_quanta=F("units_issued_quanta") + purchase.quanta,
    )


def payout_reinvest(payout: Payout, distribution: Distribution) -> None:
    """For a holder who opted in, once the payout's net is in their available cash (the
    caller's transaction holds the payout's lock): buy what it buys, or note why not."""
    if payout.net_minor <= 0 or not is_reinvesting(
        investor_id=payout.investor_id, offering_id=distribution.offering_id
    ):
        return
    offering = Offering.objects.select_related("issuer").get(pk=distribution.offering_id)
    try:
        with transaction.atomic():  # a savepoint: a refusal undoes only the purchase
            purchase = _purchase(payout, offering)
            _check(payout.investor, offering, purchase)
            _post(payout, distribution, purchase)
    except DomainError as refusal:
        Payout.objects.filter(pk=payout.pk).update(reinvestment_note=str(refusal)[:2000])
        return
    Payout.objects.filter(pk=payout.pk).update(
        reinvested_quanta=purchase.quanta,
        reinvested_minor=purchase.cost_minor,
        reinvestment_note=f"Bought at NAV {offering.currency} "
        f"{format_minor_units(purchase.cost_minor // purchase.quanta, offering.currency)} "
        "per quantum.",
    )
