"""Reads of distributions and payouts, scoped to who asks:

- staff see every distribution and every payout;
- members of the offering's sponsor see the offering's distributions and all their payouts;
- an investor sees the distributions that pay them (once the payouts are computed), and only
  their own payout in each. Anyone else: 404 (never leak existence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum

from captable.models import Distribution, Payout
from common.errors import NotFound
from offerings.selectors import signed_in_user, sponsor_ids_of


def _sees_every_payout(user: Any, distribution: Distribution) -> bool:
    member = signed_in_user(user)
    return member is not None and (
        member.is_staff or distribution.offering.sponsor_id in sponsor_ids_of(member)
    )


def distributions_visible_to(
    *, user: Any, offering_id: int | None = None, status: str | None = None
) -> QuerySet[Distribution]:
    """The distributions `user` may see, newest first."""
    distributions = Distribution.objects.select_related("offering").order_by("-created_at", "-id")
    member = signed_in_user(user)
    if member is None:
        return distributions.none()
    if not member.is_staff:
        own_offerings = Q(offering__sponsor_id__in=sponsor_ids_of(member))
        paid_to_me = Q(pk__in=Payout.objects.filter(investor__user=member).values("distribution"))
        distributions = distributions.filter(own_offerings | paid_to_me)
    if offering_id is not None:
        distributions = distributions.filter(offering_id=offering_id)
    if status:
        distributions = distributions.filter(status=status)
    return distributions


def distribution_get(*, user: Any, distribution_id: int) -> Distribution:
    distribution = distributions_visible_to(user=user).filter(pk=distribution_id).first()
    if distribution is None:
        raise NotFound(f"Distribution {distribution_id} not found.", code="distribution_not_found")
    return distribution


def payouts_visible_to(*, user: Any, distribution: Distribution) -> QuerySet[Payout]:
    """The distribution's payouts `user` may see, by investor id: all of them for staff and
    the sponsor, only their own for an investor."""
    payouts = Payout.objects.filter(distribution=distribution).order_by("investor_id")
    if _sees_every_payout(user, distribution):
        return payouts
    return payouts.filter(investor__user=signed_in_user(user))


@dataclass(frozen=True)
class PayoutTotals:
    payouts: int
    payouts_paid: int
    gross_minor: int
    income_minor: int
    return_of_capital_minor: int
    withholding_minor: int
    net_minor: int
    promote_minor: int = 0


def payout_totals(payouts: QuerySet[Payout]) -> PayoutTotals:
    """Counts and sums over `payouts` (exact integers)."""
    sums = payouts.aggregate(
        payouts=Count("pk"),
        payouts_paid=Count("pk", filter=Q(paid_at__isnull=False)),
        gross=Sum("gross_minor"),
        income=Sum("income_minor"),
        capital=Sum("return_of_capital_minor"),
        withholding=Sum("withholding_minor"),
        net=Sum("net_minor"),
        promote=Sum("promote_minor"),
    )
    return PayoutTotals(
        payouts=int(sums["payouts"]),
        payouts_paid=int(sums["payouts_paid"]),
        gross_minor=int(sums["gross"] or 0),
        income_minor=int(sums["income"] or 0),
        return_of_capital_minor=int(sums["capital"] or 0),
        withholding_minor=int(sums["withholding"] or 0),
        net_minor=int(sums["net"] or 0),
        promote_minor=int(sums["promote"] or 0),
    )
