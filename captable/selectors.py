"""Reads of the ledger as of any instant: a query over postings up to that instant, which
equals a replay of the entries up to it (tested by property tests against a replay)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from captable.models import Account, AccountKind, Posting, units_asset
from investors.models import Investor
from offerings.models import Offering

PERCENT_PLACES = Decimal("0.0001")


def percent_of(part: int, whole: int) -> Decimal:
    """A share as a percentage for display (4 places, half to even); not a money amount."""
    if whole == 0:
        return Decimal(0)
    return (Decimal(part) * 100 / Decimal(whole)).quantize(PERCENT_PLACES, ROUND_HALF_EVEN)


@dataclass(frozen=True)
class CapTableRow:
    investor_id: int
    quanta: int
    cost_minor: int
    percent: Decimal


@dataclass(frozen=True)
class CapTable:
    offering_id: int
    as_of: datetime
    authorized_quanta: int
    treasury_quanta: int
    issued_quanta: int
    rows: list[CapTableRow]


_HOLDINGS_AS_OF_SQL = """
    SELECT a.investor_id, SUM(p.amount), SUM(p.cost_minor)
    FROM captable_posting p
    JOIN captable_account a ON a.id = p.account_id
    WHERE p.asset = %s AND p.effective_at <= %s AND a.kind = 'holding'
    GROUP BY a.investor_id
    HAVING SUM(p.amount) <> 0
    ORDER BY a.investor_id
"""

_SUPPLY_AS_OF_SQL = """
    SELECT a.kind, SUM(p.amount)
    FROM captable_posting p
    JOIN captable_account a ON a.id = p.account_id
    WHERE p.asset = %s AND p.effective_at <= %s AND a.kind IN ('treasury', 'authorized')
    GROUP BY a.kind
"""


def captable_as_of(*, offering: Offering, as_of: datetime | None = None) -> CapTable:
    """Holders of the offering at `as_of` (default now): units, cost basis, percentage of
    the units issued."""
    moment = as_of or timezone.now()
    asset = units_asset(offering.pk)
    # Adapted as the ORM would: SQLite compares datetimes as UTC text, so an aware datetime
    # in another offset must be converted first, or the comparison is wrong.
    instant = connection.ops.adapt_datetimefield_value(moment)
    with connection.cursor() as cursor:
        cursor.execute(_HOLDINGS_AS_OF_SQL, [asset, instant])
        holdings = cursor.fetchall()
        cursor.execute(_SUPPLY_AS_OF_SQL, [asset, instant])
        supply = dict(cursor.fetchall())
    issued = sum(int(quanta) for _, quanta, _ in holdings)
    rows = [
        CapTableRow(int(investor_id), int(quanta), int(cost), percent_of(int(quanta), issued))
        for investor_id, quanta, cost in holdings
    ]
    return CapTable(
        offering_id=offering.pk,
        as_of=moment,
        authorized_quanta=-int(supply.get(AccountKind.AUTHORIZED, 0)),
        treasury_quanta=int(supply.get(AccountKind.TREASURY, 0)),
        issued_quanta=issued,
        rows=rows,
    )


@dataclass(frozen=True)
class Position:
    offering_id: int
    quanta: int
    cost_minor: int


def positions_as_of(*, investor: Investor, as_of: datetime | None = None) -> list[Position]:
    """The investor's holdings in every offering at `as_of` (default now)."""
    moment = as_of or timezone.now()
    rows = (
        Posting.objects.filter(
            account__investor=investor,
            account__kind=AccountKind.HOLDING,
            effective_at__lte=moment,
        )
        .values("account__offering_id")
        .annotate(quanta=Sum("amount"), cost=Sum("cost_minor"))
        .exclude(quanta=0)
        .order_by("account__offering_id")
    )
    return [Position(row["account__offering_id"], row["quanta"], row["cost"]) for row in rows]


def account_balance_as_of(*, account: Account, as_of: datetime | None = None) -> int:
    moment = as_of or timezone.now()
    total = Posting.objects.filter(account=account, effective_at__lte=moment).aggregate(
        total=Sum("amount")
    )["total"]
    return int(total or 0)


@dataclass(frozen=True)
class LotPosition:
    lot_id: int
    issued_at: datetime
    quanta: int
    cost_minor: int


def lots_as_of(*, holding: Account, as_of: datetime | None = None) -> list[LotPosition]:
    moment = as_of or timezone.now()
    rows = (
        Posting.objects.filter(account=holding, effective_at__lte=moment)
        .values("lot_id", "lot__issued_at")
        .annotate(quanta=Sum("amount"), cost=Sum("cost_minor"))
        .exclude(quanta=0)
        .order_by("lot__issued_at", "lot_id")
    )
    return [
        LotPosition(row["lot_id"], row["lot__issued_at"], row["quanta"], row["cost"])
        for row in rows
    ]
