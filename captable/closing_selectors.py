"""Reads for closing: the money an offering has raised, its detail statistics, its close
requests and closing record, and the business-day calendar of the Reg CF early-close notice.

"Raised" means paid: funded subscriptions (money in escrow) and accepted ones (units issued).
Reserved and signed subscriptions are commitments without money and do not count.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from captable.models import (
    CloseRequest,
    CloseRequestStatusChange,
    EarlyClose,
    EarlyCloseStatus,
    OfferingClosing,
    ReconfirmationStatus,
    Subscription,
    SubscriptionReconfirmation,
    SubscriptionStatus,
)
from captable.selectors import percent_of
from captable.subscriptions import supply_quanta
from common.auth import staff_required
from common.errors import NotFound
from offerings.models import Offering
from offerings.rules import zone_of
from offerings.selectors import offering_get

PAID_STATUSES = (SubscriptionStatus.FUNDED, SubscriptionStatus.ACCEPTED)


def in_reflection_period(subscription: Subscription, now: datetime) -> bool:
    """ECSP: a non-sophisticated investor may still revoke without giving a reason."""
    return subscription.revocable_until is not None and subscription.revocable_until > now


def _withdrawable(now: datetime) -> Q:
    """Funded money that may still leave: inside an ECSP reflection period, or asked to
    reconfirm a material change (declining cancels and refunds it)."""
    reconfirming = Exists(
        SubscriptionReconfirmation.objects.filter(
            subscription_id=OuterRef("pk"), status=ReconfirmationStatus.PENDING
        )
    )
    return Q(status=SubscriptionStatus.FUNDED) & (Q(revocable_until__gt=now) | Q(reconfirming))


def _firm(now: datetime) -> Q:
    """Paid and no longer withdrawable: accepted, or funded and not withdrawable."""
    return Q(status=SubscriptionStatus.ACCEPTED) | (
        Q(status=SubscriptionStatus.FUNDED) & ~_withdrawable(now)
    )


def _amount_minor(condition: Q, offering: Offering) -> int:
    total = Subscription.objects.filter(condition, offering_id=offering.pk).aggregate(
        amount=Sum("amount_minor")
    )["amount"]
    return int(total or 0)


def offering_amount_funded_minor(*, offering: Offering, now: datetime | None = None) -> int:
    """What counts toward the target when closing (or scheduling an early close): the amounts
    of accepted subscriptions and of funded ones that can no longer be withdrawn."""
    return _amount_minor(_firm(now or timezone.now()), offering)


def offering_amount_withdrawable_minor(*, offering: Offering, now: datetime | None = None) -> int:
    """Funded amounts that may still be withdrawn (reflection period, reconfirmation)."""
    return _amount_minor(_withdrawable(now or timezone.now()), offering)


def offering_subscription_ids(*, offering_id: int, statuses: Collection[str]) -> list[int]:
    """The offering's subscriptions in `statuses`, oldest first (closing's order of work)."""
    return list(
        Subscription.objects.filter(offering_id=offering_id, status__in=statuses)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


# --- offering detail statistics ----------------------------------------------------------------


@dataclass(frozen=True)
class OfferingStats:
    offering_id: int
    currency: str
    quanta_per_unit: int
    units_authorized_quanta: int
    # Held by subscriptions not issued yet (reserved, signed or funded): the offering's counter.
    units_reserved_quanta: int
    # Paid for: funded (in escrow) or accepted (issued) subscriptions.
    units_sold_quanta: int
    units_issued_quanta: int
    # Still open to new subscriptions (the supply, capped by what max_raise buys).
    units_available_quanta: int
    amount_raised_minor: int
    target_raise_minor: int
    investor_count: int
    waitlisted_count: int
    # None when the offering has no target (keep-what-you-raise without a minimum).
    percent_of_target: Decimal | None


def offering_stats(*, offering: Offering) -> OfferingStats:
    """One aggregate over the offering's subscriptions, plus its counters."""
    paid = Q(status__in=PAID_STATUSES)
    totals = Subscription.objects.filter(offering_id=offering.pk).aggregate(
        sold=Sum("quanta", filter=paid),
        raised=Sum("amount_minor", filter=paid),
        investors=Count("investor_id", filter=paid, distinct=True),
        waitlisted=Count("pk", filter=Q(status=SubscriptionStatus.WAITLISTED)),
    )
    raised = int(totals["raised"] or 0)
    taken = offering.units_reserved_quanta + offering.units_issued_quanta
    target = offering.target_raise_minor
    return OfferingStats(
        offering_id=offering.pk,
        currency=offering.currency,
        quanta_per_unit=offering.quanta_per_unit,
        units_authorized_quanta=offering.units_authorized_quanta,
        units_reserved_quanta=offering.units_reserved_quanta,
        units_sold_quanta=int(totals["sold"] or 0),
        units_issued_quanta=offering.units_issued_quanta,
        units_available_quanta=max(supply_quanta(offering) - taken, 0),
        amount_raised_minor=raised,
        target_raise_minor=target,
        investor_count=int(totals["investors"] or 0),
        waitlisted_count=int(totals["waitlisted"] or 0),
        percent_of_target=percent_of(raised, target) if target else None,
    )


def offering_stats_get(*, user: Any, offering_id: int) -> OfferingStats:
    """The statistics of an offering the user may see (404 otherwise)."""
    return offering_stats(offering=offering_get(user=user, offering_id=offering_id))


# --- close requests and the closing record ----------------------------------------------------


def close_requests_of(*, user: Any, offering_id: int) -> QuerySet[CloseRequest]:
    """Staff only: an offering's close requests, newest first."""
    staff_required(user)
    return CloseRequest.objects.filter(offering_id=offering_id).order_by("-created_at", "-pk")


def close_request_get(*, user: Any, offering_id: int, close_request_id: int) -> CloseRequest:
    close_request = (
        close_requests_of(user=user, offering_id=offering_id).filter(pk=close_request_id).first()
    )
    if close_request is None:
        raise NotFound(
            f"Close request {close_request_id} not found.", code="close_request_not_found"
        )
    return close_request


def close_request_history(*, close_request: CloseRequest) -> list[CloseRequestStatusChange]:
    return list(close_request.status_changes.order_by("created_at", "pk"))


def offering_closing_of(*, offering_id: int) -> OfferingClosing | None:
    return OfferingClosing.objects.filter(offering_id=offering_id).first()


def early_close_latest(*, offering_id: int) -> EarlyClose | None:
    return (
        EarlyClose.objects.select_related("offering")
        .filter(offering_id=offering_id)
        .order_by("-notice_given_at", "-pk")
        .first()
    )


def early_close_scheduled(*, offering_id: int) -> EarlyClose | None:
    return EarlyClose.objects.filter(
        offering_id=offering_id, status=EarlyCloseStatus.SCHEDULED
    ).first()


# --- business days (Reg CF early-close notice) -------------------------------------------------

REG_CF_NOTICE_BUSINESS_DAYS = 5


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    following = date(year + (month == 12), month % 12 + 1, 1)
    last = following - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """A holiday on a Saturday is observed the Friday before, on a Sunday the Monday after."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


@cache
def us_federal_holidays(year: int) -> frozenset[date]:
    """The US federal holidays observed in `year` (5 U.S.C. 6103; Juneteenth since 2021), as
    the SEC counts business days. New Year's Day of the next year observed on 31 December
    counts too."""
    monday, thursday = 0, 3
    fixed = [(1, 1), (7, 4), (11, 11), (12, 25)] + ([(6, 19)] if year >= 2021 else [])
    days = {_observed(date(year, month, day)) for month, day in fixed}
    days |= {
        _nth_weekday(year, 1, monday, 3),  # Birthday of Martin Luther King, Jr.
        _nth_weekday(year, 2, monday, 3),  # Washington's Birthday
        _last_weekday(year, 5, monday),  # Memorial Day
        _nth_weekday(year, 9, monday, 1),  # Labor Day
        _nth_weekday(year, 10, monday, 2),  # Columbus Day
        _nth_weekday(year, 11, thursday, 4),  # Thanksgiving Day
    }
    next_new_year = _observed(date(year + 1, 1, 1))
    if next_new_year.year == year:
        days.add(next_new_year)
    return frozenset(day for day in days if day.year == year)


def is_business_day(day: date) -> bool:
    return day.weekday() < 5 and day not in us_federal_holidays(day.year)


def business_days_after_notice(notice_at: datetime, *, days: int, time_zone: str) -> datetime:
    """The earliest deadline `days` full business days after a notice: midnight (in the
    offering's time zone) ending the `days`-th business day after the notice's own day. The
    notice's day never counts, whatever the hour it was given."""
    zone = zone_of(time_zone)
    day = timezone.localtime(notice_at, zone).date()
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        counted += is_business_day(day)
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
