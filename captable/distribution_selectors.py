"""Reads of distributions and payouts, scoped to who asks:

- staff see every distribution and every payout;
- members of the offering's sponsor see the offering's distributions and all their payouts;
- an investor sees the distributions that pay them (once the payouts are computed), and only
  their own payout in each. Anyone else: 404 (never leak existence).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import Count, Max, Q, QuerySet, Sum

from captable.models import Account, AccountKind, Distribution, Payout, units_asset
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


def reported_period_end_on_or_after(*, offering_id: int, record_date: date) -> date | None:
    """The latest end of a period already reported to the offering's investors that ends on
    or after `record_date` (None if there is none): a periodic investor statement issued, or a
    batch of them started, for that offering or for all offerings. A statement for all of an
    investor's offerings reports this one if the investor holds (or held) its units.

    Reports depend on captable, so their models are imported here, when asked, not at the
    top (an import cycle otherwise)."""
    from reports.models import Statement, StatementBatch, StatementKind

    periodic = StatementKind.INVESTOR_PERIODIC
    holders = Account.objects.filter(offering_id=offering_id, kind=AccountKind.HOLDING)
    statements = Statement.objects.filter(
        Q(offering_id=offering_id)
        | Q(offering__isnull=True, investor_id__in=holders.values("investor_id")),
        kind=periodic,
        period_end__gte=record_date,
    )
    batches = StatementBatch.objects.filter(
        Q(offering_id=offering_id) | Q(offering__isnull=True),
        kind=periodic,
        period_end__gte=record_date,
    )
    ends = [
        found
        for found in (
            statements.aggregate(end=Max("period_end"))["end"],
            batches.aggregate(end=Max("period_end"))["end"],
        )
        if found is not None
    ]
    return max(ends, default=None)


class HolderOfRecord(NamedTuple):
    investor_id: int
    quanta: int
    tax_form: str
    treaty_withholding_rate_basis_points: int | None


# The holders of record from the offering's holding accounts: each account's balance (the sum of
# all its postings, kept by the posting trigger on both databases) less its postings effective
# after the instant — the same sum as the postings up to it, in one statement (one snapshot), but
# reading only what moved since the record date (an index range on (asset, effective_at)), not
# every posting of the offering's history (1,000,000 in the benchmark: ~0.8 s of database time,
# now a read of the holding accounts). Joined to the investors' tax forms on file.
_HOLDERS_OF_RECORD_SQL = """
    SELECT a.investor_id, CAST(a.balance - COALESCE(later.quanta, 0) AS BIGINT) AS quanta,
           i.tax_form, i.treaty_withholding_rate_basis_points
    FROM captable_account a
    LEFT JOIN (
        SELECT account_id, SUM(amount) AS quanta
        FROM captable_posting
        WHERE asset = %s AND effective_at > %s
        GROUP BY account_id
    ) later ON later.account_id = a.id
    JOIN investors_investor i ON i.id = a.investor_id
    WHERE a.offering_id = %s AND a.kind = %s AND a.asset = %s
      AND a.balance - COALESCE(later.quanta, 0) <> 0
    ORDER BY a.investor_id
"""


def holders_of_record(*, offering_id: int, as_of: datetime) -> list[HolderOfRecord]:
    """Who held units of the offering at `as_of` (the as-of cap table's holders, by investor
    id), with the tax form each has on file now."""
    # Adapted as the ORM would (SQLite compares datetimes as UTC text).
    instant = connection.ops.adapt_datetimefield_value(as_of)
    with connection.cursor() as cursor:
        asset = units_asset(offering_id)
        cursor.execute(
            _HOLDERS_OF_RECORD_SQL, [asset, instant, offering_id, AccountKind.HOLDING, asset]
        )
        return [HolderOfRecord(*row) for row in cursor.fetchall()]
