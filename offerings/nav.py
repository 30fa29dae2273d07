"""Net asset value per unit: posted by the offering's sponsor or staff with an effective date,
read "as of" a day by reinvestment (DRIP), portfolio values and statements.

- Posting (service `nav_post`): the offering closed funded; a positive amount in the
  offering's currency per whole unit, whose share per quantum is a whole number of minor units
  (as for the price: reinvestment buys whole quanta at NAV); the effective date not after
  today in the offering's time zone. History is append-only: a correction is a new row.
- Reading (selector `nav_as_of`): the latest effective date on or before the day, and of the
  rows for that date the last posted. None before the first NAV.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from common.errors import Conflict, NotAllowed, ValidationFailed
from common.models import User
from offerings.models import NetAssetValue, Offering, OfferingStatus
from offerings.selectors import offering_get, sponsor_ids_of


def nav_post(
    *,
    actor: User,
    offering_id: int,
    nav_per_unit_minor: int,
    currency: str,
    effective_date: date,
    memo: str = "",
) -> NetAssetValue:
    """The sponsor (or staff) post the offering's NAV per unit from `effective_date` on."""
    with transaction.atomic():
        offering = offering_get(user=actor, offering_id=offering_id)
        if not (actor.is_staff or offering.sponsor_id in sponsor_ids_of(actor)):
            raise NotAllowed(
                "Only the offering's sponsor (or staff) post its NAV.", code="sponsor_only"
            )
        if offering.status != OfferingStatus.CLOSED_FUNDED:
            raise Conflict(
                f"The offering is {offering.status}; NAV is posted once it has closed funded.",
                code="offering_not_closed_funded",
            )
        _check(offering, nav_per_unit_minor, currency, effective_date)
        return NetAssetValue.objects.create(
            offering=offering,
            effective_date=effective_date,
            nav_per_unit_minor=nav_per_unit_minor,
            currency=currency,
            memo=memo,
            posted_by=actor,
        )


def _check(offering: Offering, nav_per_unit_minor: int, currency: str, on: date) -> None:
    if currency != offering.currency:
        raise ValidationFailed(
            f"The offering is in {offering.currency}, not {currency}.", code="currency_mismatch"
        )
    if (
        isinstance(nav_per_unit_minor, bool)
        or not isinstance(nav_per_unit_minor, int)
        or nav_per_unit_minor <= 0
    ):
        raise ValidationFailed("NAV per unit must be more than zero.", code="nav_not_positive")
    if nav_per_unit_minor % offering.quanta_per_unit:
        raise ValidationFailed(
            f"NAV per unit must split into {offering.quanta_per_unit} quanta of whole minor "
            "units each.",
            code="nav_quantum_not_whole",
        )
    today = timezone.now().astimezone(ZoneInfo(offering.time_zone)).date()
    if on > today:
        raise ValidationFailed(
            f"The effective date {on} is in the future (today is {today}).",
            code="nav_date_future",
        )


def nav_as_of(*, offering_id: int, on: date) -> NetAssetValue | None:
    """The NAV in force on `on` (no visibility check: callers have already scoped the
    offering)."""
    return (
        NetAssetValue.objects.filter(offering_id=offering_id, effective_date__lte=on)
        .order_by("-effective_date", "-id")
        .first()
    )


def nav_history(*, user: Any, offering_id: int) -> QuerySet[NetAssetValue]:
    """Every NAV posted for an offering `user` may see, newest effective date first."""
    offering = offering_get(user=user, offering_id=offering_id)
    return NetAssetValue.objects.filter(offering=offering).order_by("-effective_date", "-id")
